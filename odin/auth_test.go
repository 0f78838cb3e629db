package odin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoginIsLazyAndReused(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("PUT /users/passwords", respondJSON(http.StatusOK, map[string]any{}))
	c := f.newClient()

	if got := f.logins.Load(); got != 0 {
		t.Fatalf("NewClient logged in %d times, want 0", got)
	}
	for range 3 {
		if err := c.SetWebPassword(context.Background(), "u1@example.com", "Pw-123456789"); err != nil {
			t.Fatalf("SetWebPassword: %v", err)
		}
	}
	if got := f.logins.Load(); got != 1 {
		t.Errorf("logged in %d times for 3 calls, want 1", got)
	}
}

func TestExplicitLogin(t *testing.T) {
	f := newFakeOdin(t)
	c := f.newClient()

	if err := c.Login(context.Background()); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if got := f.logins.Load(); got != 1 {
		t.Errorf("Login sent %d logins, want 1", got)
	}
	if got := c.currentToken(); got != "opaque-token-1" {
		t.Errorf("token after Login = %q, want %q", got, "opaque-token-1")
	}
}

func TestUnauthorizedThenSuccess(t *testing.T) {
	tests := []struct {
		name   string
		status int
	}{
		{name: "401", status: http.StatusUnauthorized},
		{name: "403", status: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			var calls atomic.Int64
			f.handle("PUT /users/passwords", func(w http.ResponseWriter, _ *http.Request) {
				if calls.Add(1) == 1 {
					writeJSON(w, tt.status, map[string]any{"error": "Session expired", "status": tt.status})
					return
				}
				writeJSON(w, http.StatusOK, map[string]any{})
			})
			c := f.newClient()

			if err := c.SetWebPassword(context.Background(), "u1@example.com", "Pw-123456789"); err != nil {
				t.Fatalf("SetWebPassword: %v", err)
			}

			if got := f.logins.Load(); got != 2 {
				t.Errorf("logins = %d, want 2 (first use and after %d)", got, tt.status)
			}
			puts := f.recorded("PUT /users/passwords")
			if len(puts) != 2 {
				t.Fatalf("sent %d PUTs, want 2", len(puts))
			}
			if a, b := puts[0].Header.Get("Authorization"), puts[1].Header.Get("Authorization"); a == b {
				t.Errorf("retry used the rejected token %q", b)
			}
			if string(puts[0].Body) != string(puts[1].Body) {
				t.Errorf("retry body %s differs from the first %s", puts[1].Body, puts[0].Body)
			}
		})
	}
}

func TestUnauthorizedTwiceIsPermanent(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("PUT /users/passwords", respondJSON(http.StatusForbidden, map[string]any{"error": "Access denied for user u1", "status": 403}))
	c := f.newClient()

	err := c.SetWebPassword(context.Background(), "u1@example.com", "Pw-123456789")

	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden {
		t.Fatalf("error = %v, want a 403 *APIError", err)
	}
	if got := len(f.recorded("PUT /users/passwords")); got != 2 {
		t.Errorf("sent %d PUTs, want 2 (one retry after a fresh login)", got)
	}
	if !IsPermanent(err) || IsAuthFailure(err) {
		t.Errorf("IsPermanent = %v, IsAuthFailure = %v, want true, false", IsPermanent(err), IsAuthFailure(err))
	}
}

func TestConcurrentUnauthorizedCausesOneLogin(t *testing.T) {
	const callers = 50
	f := newFakeOdin(t)
	f.handle("PUT /users/passwords", respondJSON(http.StatusOK, map[string]any{}))
	c := f.newClient()
	if err := c.Login(context.Background()); err != nil {
		t.Fatalf("Login: %v", err)
	}
	f.expireTokens()

	// Hold the re-login until every caller has had its old token rejected, so that all
	// of them ask for a new login at the same time.
	allRejected := make(chan struct{})
	var rejected atomic.Int64
	f.setOnUnauthorized(func() {
		if rejected.Add(1) == callers {
			close(allRejected)
		}
	})
	f.setLoginHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-allRejected:
		case <-time.After(10 * time.Second):
			t.Error("not every caller got a 401 before the re-login")
		}
		writeJSON(w, http.StatusOK, map[string]any{"token": f.issueToken()})
	})

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			errs <- c.SetWebPassword(context.Background(), "u1@example.com", "Pw-123456789")
		})
	}
	wg.Wait()
	close(errs)

	for err := range errs {
		if err != nil {
			t.Errorf("SetWebPassword: %v", err)
		}
	}
	if got := rejected.Load(); got != callers {
		t.Errorf("%d callers got 401, want %d", got, callers)
	}
	if got := f.logins.Load(); got != 2 {
		t.Errorf("logins = %d, want 2 (the first and one re-login for %d rejected callers)", got, callers)
	}
	if got := len(f.recorded("PUT /users/passwords")); got != 2*callers {
		t.Errorf("sent %d PUTs, want %d (each caller once with the old and once with the new token)", got, 2*callers)
	}
}

func TestFailedLoginIsSharedWithWaitingCallers(t *testing.T) {
	f := newFakeOdin(t)
	f.setLoginHandler(respondJSON(http.StatusUnauthorized, map[string]any{"error": "Invalid credentials"}))
	c := f.newClient()
	ctx := context.Background()

	// A caller that saw the session before the failed login, as callers waiting for the
	// renewal slot do, gets the same error without a login of its own.
	_, seenBefore, _ := c.token(ctx)
	firstErr := c.Login(ctx)
	if !IsAuthFailure(firstErr) {
		t.Fatalf("Login error = %v, want a *LoginError", firstErr)
	}
	waitingErr := c.renew(ctx, seenBefore, renewByLogin)

	if waitingErr != firstErr {
		t.Errorf("waiting caller got %v, want the same error as the failed login", waitingErr)
	}
	if got := f.logins.Load(); got != 2 {
		t.Errorf("logins = %d, want 2 (the token call and Login, none for the waiting caller)", got)
	}

	// A caller arriving after the failure tries again.
	if err := c.Login(ctx); !IsAuthFailure(err) {
		t.Errorf("later Login error = %v, want a *LoginError", err)
	}
	if got := f.logins.Load(); got != 3 {
		t.Errorf("logins = %d, want 3", got)
	}
}

func TestConcurrentFailedLogin(t *testing.T) {
	const callers = 20
	f := newFakeOdin(t)
	release := make(chan struct{})
	firstLogin := make(chan struct{})
	var once sync.Once
	f.setLoginHandler(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(firstLogin) })
		<-release
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Invalid credentials", "status": 401})
	})
	c := f.newClient()

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			errs <- c.SetWebPassword(context.Background(), "u1@example.com", "Pw-123456789")
		})
	}
	<-firstLogin
	close(release)
	wg.Wait()
	close(errs)

	for err := range errs {
		if !IsAuthFailure(err) {
			t.Errorf("error = %v, want a *LoginError", err)
		}
	}
	// Callers that took their snapshot before the first login failed share its error;
	// only late starters send another login.
	if got := f.logins.Load(); got >= callers {
		t.Errorf("%d callers sent %d logins, want fewer", callers, got)
	}
}

func TestLoginRejected(t *testing.T) {
	tests := []struct {
		name           string
		status         int
		body           string
		wantPwChange   bool
		wantAuthFail   bool
		wantTransient  bool
		wantMessageHas string
	}{
		{name: "bad credentials", status: 401, body: `{"error": "Invalid credentials", "status": 401}`, wantAuthFail: true, wantMessageHas: "Invalid credentials"},
		{name: "forbidden", status: 403, body: `{"error": "Account locked", "status": 403}`, wantAuthFail: true, wantMessageHas: "Account locked"},
		{name: "password change required", status: 402, body: `{"error": "Password expired", "status": 402}`, wantPwChange: true, wantAuthFail: true, wantMessageHas: "must be changed"},
		{name: "bad request", status: 400, body: `{"error": "[Error 4962] Invalid userId or password.", "status": 400}`, wantAuthFail: true, wantMessageHas: "4962"},
		{name: "server error", status: 500, body: `{"error": "XSP unreachable", "status": 500}`, wantTransient: true, wantMessageHas: "XSP unreachable"},
		{name: "rate limited", status: 429, body: `{"error": "slow down"}`, wantTransient: true, wantMessageHas: "slow down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.setLoginHandler(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			c := f.newClient()

			err := c.SetWebPassword(context.Background(), "u1@example.com", "Pw-123456789")

			if err == nil {
				t.Fatal("SetWebPassword = nil error, want a login error")
			}
			if got := errors.Is(err, ErrPasswordChangeRequired); got != tt.wantPwChange {
				t.Errorf("errors.Is(err, ErrPasswordChangeRequired) = %v, want %v", got, tt.wantPwChange)
			}
			if got := IsAuthFailure(err); got != tt.wantAuthFail {
				t.Errorf("IsAuthFailure = %v, want %v", got, tt.wantAuthFail)
			}
			if got := IsTransient(err); got != tt.wantTransient {
				t.Errorf("IsTransient = %v, want %v", got, tt.wantTransient)
			}
			if IsPermanent(err) {
				t.Error("IsPermanent = true, want false for a login failure")
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tt.status || apiErr.Path != "/auth/token" {
				t.Errorf("errors.As(*APIError) = %+v, want status %d at /auth/token", apiErr, tt.status)
			}
			if !strings.Contains(err.Error(), tt.wantMessageHas) {
				t.Errorf("error %q does not contain %q", err, tt.wantMessageHas)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error %q contains the admin password", err)
			}
			if got := len(f.recorded("PUT /users/passwords")); got != 0 {
				t.Errorf("sent %d PUTs without a token, want 0", got)
			}
		})
	}
}

func TestLoginErrorHidesEchoedPassword(t *testing.T) {
	f := newFakeOdin(t)
	f.setLoginHandler(respondJSON(http.StatusUnauthorized, map[string]any{
		"error":   "Invalid password " + testPassword + " for " + testUsername,
		"details": map[string]any{"password": testPassword},
	}))
	c := f.newClient()

	err := c.Login(context.Background())

	if err == nil {
		t.Fatal("Login = nil error, want a *LoginError")
	}
	if strings.Contains(err.Error(), testPassword) {
		t.Errorf("error %q contains the admin password", err)
	}
	if !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("error %q does not mark the removed password", err)
	}
}

func TestLoginResponseWithoutToken(t *testing.T) {
	f := newFakeOdin(t)
	f.setLoginHandler(respondJSON(http.StatusOK, map[string]any{"loginType": "System"}))
	c := f.newClient()

	err := c.Login(context.Background())

	if err == nil || !strings.Contains(err.Error(), "no token") {
		t.Fatalf("Login error = %v, want one about the missing token", err)
	}
	if IsAuthFailure(err) || IsTransient(err) || IsPermanent(err) {
		t.Errorf("missing token classified as auth failure, transient or permanent: %v", err)
	}
}

func TestTokenRefresh(t *testing.T) {
	const lifetime = time.Hour
	tests := []struct {
		name          string
		advance       time.Duration // after the first call
		refreshFails  bool
		wantLogins    int64
		wantRefreshes int64
	}{
		{name: "fresh token is reused", advance: 30 * time.Minute, wantLogins: 1, wantRefreshes: 0},
		{name: "refresh when a quarter remains", advance: 46 * time.Minute, wantLogins: 1, wantRefreshes: 1},
		{name: "login when the refresh fails", advance: 50 * time.Minute, refreshFails: true, wantLogins: 2, wantRefreshes: 1},
		{name: "login after expiry", advance: lifetime + time.Second, wantLogins: 2, wantRefreshes: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			f := newFakeOdin(t)
			f.now, f.lifetime = clock.Now, lifetime
			f.handle("PUT /users/passwords", respondJSON(http.StatusOK, map[string]any{}))
			if tt.refreshFails {
				f.setRefreshHandler(respondJSON(http.StatusInternalServerError, map[string]any{"error": "refresh broken"}))
			}
			c := f.newClient(WithClock(clock.Now))
			ctx := context.Background()

			if err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789"); err != nil {
				t.Fatalf("first SetWebPassword: %v", err)
			}
			clock.Advance(tt.advance)
			for range 2 {
				if err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789"); err != nil {
					t.Fatalf("SetWebPassword after %v: %v", tt.advance, err)
				}
			}

			if got := f.logins.Load(); got != tt.wantLogins {
				t.Errorf("logins = %d, want %d", got, tt.wantLogins)
			}
			if got := f.refreshes.Load(); got != tt.wantRefreshes {
				t.Errorf("refreshes = %d, want %d", got, tt.wantRefreshes)
			}
			puts := f.recorded("PUT /users/passwords")
			for i, put := range puts {
				if put.Header.Get("Authorization") == "" {
					t.Errorf("PUT %d sent no token", i)
				}
			}
			if got := len(puts); got != 3 {
				t.Errorf("sent %d PUTs, want 3 (no 401 retries)", got)
			}
		})
	}
}

func TestRefreshSendsCurrentTokenWithoutBody(t *testing.T) {
	clock := newFakeClock()
	f := newFakeOdin(t)
	f.now, f.lifetime = clock.Now, 10*time.Minute
	c := f.newClient(WithClock(clock.Now))
	ctx := context.Background()
	if err := c.Login(ctx); err != nil {
		t.Fatalf("Login: %v", err)
	}
	first := c.currentToken()

	clock.Advance(8 * time.Minute) // 2 of 10 minutes remain: under the 2.5-minute margin
	f.handle("GET /users/authentication", respondJSON(http.StatusOK, map[string]any{"userName": "u1"}))
	if _, err := c.SIPUserName(ctx, "u1@example.com"); err != nil {
		t.Fatalf("SIPUserName: %v", err)
	}

	refreshes := f.recorded("PUT /auth/token")
	if len(refreshes) != 1 {
		t.Fatalf("sent %d refreshes, want 1", len(refreshes))
	}
	if got := refreshes[0].Header.Get("Authorization"); got != "Bearer "+first {
		t.Errorf("refresh Authorization = %q, want the current token", got)
	}
	if len(refreshes[0].Body) != 0 {
		t.Errorf("refresh sent a %d-byte body, want none", len(refreshes[0].Body))
	}
	get := f.recorded("GET /users/authentication")[0]
	if got := get.Header.Get("Authorization"); got == "Bearer "+first || got == "" {
		t.Errorf("call after the refresh used %q, want the new token", got)
	}
}

func TestRefreshMargin(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration
		want     time.Duration // refresh this long after the login
	}{
		{name: "one hour refreshes at a quarter left", lifetime: time.Hour, want: 45 * time.Minute},
		{name: "three minutes refreshes at one minute left", lifetime: 3 * time.Minute, want: 2 * time.Minute},
		{name: "thirty seconds refreshes at half", lifetime: 30 * time.Second, want: 15 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			f := newFakeOdin(t)
			f.now, f.lifetime = clock.Now, tt.lifetime
			c := f.newClient(WithClock(clock.Now))
			if err := c.Login(context.Background()); err != nil {
				t.Fatalf("Login: %v", err)
			}

			c.auth.mu.Lock()
			got := c.auth.session.refreshAt.Sub(clock.Now())
			c.auth.mu.Unlock()
			// exp has whole seconds, so allow one second of rounding.
			if got < tt.want-time.Second || got > tt.want {
				t.Errorf("refresh planned %v after login, want %v", got, tt.want)
			}
		})
	}
}

func TestOpaqueTokenIsNeverRefreshed(t *testing.T) {
	clock := newFakeClock()
	f := newFakeOdin(t) // lifetime 0: opaque tokens that never expire
	f.handle("PUT /users/passwords", respondJSON(http.StatusOK, map[string]any{}))
	c := f.newClient(WithClock(clock.Now))
	ctx := context.Background()

	for range 3 {
		if err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789"); err != nil {
			t.Fatalf("SetWebPassword: %v", err)
		}
		clock.Advance(24 * time.Hour)
	}

	if got := f.logins.Load(); got != 1 {
		t.Errorf("logins = %d, want 1", got)
	}
	if got := f.refreshes.Load(); got != 0 {
		t.Errorf("refreshes = %d, want 0", got)
	}
}

func TestTokenExpiredByLocalClockIsUsed(t *testing.T) {
	// Odin's clock is an hour behind: the token it issues has already expired by the
	// client's clock. The client must use it instead of logging in before every call.
	clock := newFakeClock()
	f := newFakeOdin(t)
	f.lifetime = 30 * time.Minute
	f.now = func() time.Time { return clock.Now().Add(-time.Hour) }
	f.handle("PUT /users/passwords", respondJSON(http.StatusOK, map[string]any{}))
	c := f.newClient(WithClock(clock.Now))

	for range 3 {
		if err := c.SetWebPassword(context.Background(), "u1@example.com", "Pw-123456789"); err != nil {
			t.Fatalf("SetWebPassword: %v", err)
		}
	}

	if got := f.logins.Load(); got != 1 {
		t.Errorf("logins = %d, want 1", got)
	}
}

func TestFailedRefreshKeepsValidToken(t *testing.T) {
	clock := newFakeClock()
	f := newFakeOdin(t)
	f.now, f.lifetime = clock.Now, time.Hour
	f.handle("PUT /users/passwords", respondJSON(http.StatusOK, map[string]any{}))
	c := f.newClient(WithClock(clock.Now))
	ctx := context.Background()
	if err := c.Login(ctx); err != nil {
		t.Fatalf("Login: %v", err)
	}

	// Odin's auth endpoints fail, but the current token still works.
	f.setRefreshHandler(respondJSON(http.StatusServiceUnavailable, map[string]any{"error": "maintenance"}))
	f.setLoginHandler(respondJSON(http.StatusServiceUnavailable, map[string]any{"error": "maintenance"}))
	clock.Advance(50 * time.Minute)
	for range 3 {
		if err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789"); err != nil {
			t.Fatalf("SetWebPassword with a failing refresh: %v", err)
		}
	}
	if got := f.refreshes.Load(); got != 1 {
		t.Errorf("refreshes = %d, want 1 (no new attempt within %v)", got, refreshRetryDelay)
	}

	clock.Advance(refreshRetryDelay)
	if err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789"); err != nil {
		t.Fatalf("SetWebPassword after the retry delay: %v", err)
	}
	if got := f.refreshes.Load(); got != 2 {
		t.Errorf("refreshes = %d, want 2 after the retry delay", got)
	}

	clock.Advance(time.Hour) // now expired: the call must fail with the login's error
	err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable || apiErr.Path != "/auth/token" {
		t.Errorf("error after expiry = %v, want the 503 of POST /auth/token", err)
	}
}

func TestTokenExpiry(t *testing.T) {
	tests := []struct {
		name   string
		token  string
		want   time.Time
		wantOK bool
	}{
		{name: "integer exp", token: makeJWT(map[string]any{"exp": 1741917600}), want: time.Unix(1741917600, 0), wantOK: true},
		{name: "fractional exp", token: makeJWT(map[string]any{"exp": 1741917600.5}), want: time.Unix(1741917600, 5e8), wantOK: true},
		{name: "padded payload", token: "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3NDE5MTc2MDB9==.sig", want: time.Unix(1741917600, 0), wantOK: true},
		{name: "no exp", token: makeJWT(map[string]any{"sub": "admin"})},
		{name: "string exp", token: makeJWT(map[string]any{"exp": "soon"})},
		{name: "negative exp", token: makeJWT(map[string]any{"exp": -5})},
		{name: "opaque", token: "3f9a1c0e-opaque"},
		{name: "two parts", token: "a.b"},
		{name: "bad base64", token: "a.!!!.c"},
		{name: "payload not JSON", token: "a.bm90IGpzb24.c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tokenExpiry(tt.token)
			if ok != tt.wantOK {
				t.Fatalf("tokenExpiry ok = %v, want %v", ok, tt.wantOK)
			}
			if !got.Equal(tt.want) {
				t.Errorf("tokenExpiry = %v, want %v", got, tt.want)
			}
		})
	}
}
