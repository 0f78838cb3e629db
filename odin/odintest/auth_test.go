package odintest_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/odinreset/odinreset/odin/odintest"
)

type session struct {
	Token               string `json:"token"`
	LoginType           string `json:"loginType"`
	UserID              string `json:"userId"`
	PasswordExpiresDays int    `json:"passwordExpiresDays"`
}

// jwtClaims decodes the payload of a JWT without checking its signature, as a client does.
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decoding JWT payload: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("decoding JWT claims: %v", err)
	}
	return claims
}

func TestLogin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         odintest.Config
		body        any
		contentType string
		wantStatus  int
		wantError   string
	}{
		{name: "right credentials", body: map[string]string{"username": "admin", "password": "odin-sim-password"}, wantStatus: http.StatusOK},
		{name: "wrong password", body: map[string]string{"username": "admin", "password": "nope"}, wantStatus: http.StatusUnauthorized, wantError: "Invalid username or password"},
		{name: "wrong username", body: map[string]string{"username": "root", "password": "odin-sim-password"}, wantStatus: http.StatusUnauthorized, wantError: "Invalid username or password"},
		{name: "missing password", body: map[string]string{"username": "admin"}, wantStatus: http.StatusBadRequest},
		{name: "not JSON", body: "username=admin", wantStatus: http.StatusBadRequest},
		{name: "form content type", body: map[string]string{"username": "admin", "password": "odin-sim-password"}, contentType: "application/x-www-form-urlencoded", wantStatus: http.StatusUnsupportedMediaType},
		{
			name:       "password change required",
			cfg:        odintest.Config{LoginPasswordChangeRequired: true},
			body:       map[string]string{"username": "admin", "password": "odin-sim-password"},
			wantStatus: http.StatusPaymentRequired,
			wantError:  "Password change required",
		},
		{
			name:       "password change required but wrong password",
			cfg:        odintest.Config{LoginPasswordChangeRequired: true},
			body:       map[string]string{"username": "admin", "password": "nope"},
			wantStatus: http.StatusUnauthorized,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, tt.cfg)
			var resp response
			if tt.contentType != "" {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/auth/token", strings.NewReader(`{"username":"admin","password":"odin-sim-password"}`))
				req.Header.Set("Content-Type", tt.contentType)
				r, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				r.Body.Close()
				resp.status = r.StatusCode
			} else {
				resp = call(t, http.MethodPost, srv.URL, "/auth/token", "", tt.body)
			}

			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", resp.status, tt.wantStatus, resp.body)
			}
			if tt.wantError != "" {
				e := resp.apiError(t)
				if !strings.Contains(e.Error, tt.wantError) || e.Status != tt.wantStatus {
					t.Errorf("error body = %+v, want error containing %q and status %d", e, tt.wantError, tt.wantStatus)
				}
				if strings.Contains(string(resp.body), "odin-sim-password") || strings.Contains(string(resp.body), "nope") {
					t.Errorf("error body %s contains the password", resp.body)
				}
			}
		})
	}
}

func TestLoginSession(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := startServer(t, odintest.Config{TokenLifetime: 90 * time.Second, Now: clock.Now})

	resp := call(t, http.MethodPost, srv.URL, "/auth/token", "", map[string]string{"username": "admin", "password": "odin-sim-password"})
	var got session
	resp.decode(t, &got)

	want := session{LoginType: "System", UserID: "admin", PasswordExpiresDays: 2147483647}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(session{}, "Token")); diff != "" {
		t.Errorf("session mismatch (-want +got):\n%s", diff)
	}
	claims := jwtClaims(t, got.Token)
	if exp, want := claims["exp"], float64(clock.Now().Add(90*time.Second).Unix()); exp != want {
		t.Errorf("exp claim = %v, want %v", exp, want)
	}
	if got := srv.Stats().Logins; got != 1 {
		t.Errorf("Stats().Logins = %d, want 1", got)
	}
}

func TestTokenChecks(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := startServer(t, odintest.Config{Users: 1, TokenLifetime: 10 * time.Second, Now: clock.Now})
	other := startServer(t, odintest.Config{Users: 1})
	good := login(t, srv)
	forged := login(t, other)
	path := "/users/authentication" + query("userId", "user0001@example.com")

	tests := []struct {
		name          string
		authorization string
		wantStatus    int
		wantError     string
	}{
		{"valid token", "Bearer " + good, http.StatusOK, ""},
		{"lower-case scheme", "bearer " + good, http.StatusOK, ""},
		{"missing header", "", http.StatusUnauthorized, "Bearer token is required"},
		{"basic scheme", "Basic YWRtaW46eA==", http.StatusUnauthorized, "Bearer token is required"},
		{"garbage token", "Bearer not.a.jwt", http.StatusUnauthorized, "Invalid token"},
		{"another simulator's token", "Bearer " + forged, http.StatusUnauthorized, "Invalid token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
			if tt.authorization != "" {
				req.Header.Set("Authorization", tt.authorization)
			}
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Body.Close()
			var e apiError
			_ = json.NewDecoder(r.Body).Decode(&e)

			if r.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", r.StatusCode, tt.wantStatus)
			}
			if !strings.Contains(e.Error, tt.wantError) {
				t.Errorf("error = %q, want it to contain %q", e.Error, tt.wantError)
			}
		})
	}
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := startServer(t, odintest.Config{Users: 1, TokenLifetime: 2 * time.Second, Now: clock.Now})
	token := login(t, srv)
	path := "/users/authentication" + query("userId", "user0001@example.com")

	clock.Advance(1999 * time.Millisecond)
	if resp := call(t, http.MethodGet, srv.URL, path, token, nil); resp.status != http.StatusOK {
		t.Fatalf("just before expiry: status = %d, want 200", resp.status)
	}

	clock.Advance(time.Millisecond)
	resp := call(t, http.MethodGet, srv.URL, path, token, nil)
	if resp.status != http.StatusUnauthorized {
		t.Fatalf("at expiry: status = %d, want 401", resp.status)
	}
	if e := resp.apiError(t); e.Error != "Token has expired" {
		t.Errorf("at expiry: error = %q, want %q", e.Error, "Token has expired")
	}
	if resp := call(t, http.MethodPut, srv.URL, "/auth/token", token, nil); resp.status != http.StatusUnauthorized {
		t.Errorf("refresh of an expired token: status = %d, want 401", resp.status)
	}
}

func TestTokenExpiryRealClock(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Users: 1, TokenLifetime: 10 * time.Millisecond})
	token := login(t, srv)
	exp := int64(jwtClaims(t, token)["exp"].(float64))
	path := "/users/authentication" + query("userId", "user0001@example.com")

	// The exp claim has whole seconds, so the token lives until the next full second.
	waitFor(t, "the token's exp to pass", func() bool { return time.Now().Unix() >= exp })
	if resp := call(t, http.MethodGet, srv.URL, path, token, nil); resp.status != http.StatusUnauthorized {
		t.Errorf("after exp: status = %d, want 401", resp.status)
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := startServer(t, odintest.Config{Users: 1, TokenLifetime: time.Minute, Now: clock.Now})
	token := login(t, srv)
	path := "/users/authentication" + query("userId", "user0001@example.com")

	clock.Advance(50 * time.Second)
	resp := call(t, http.MethodPut, srv.URL, "/auth/token", token, nil)
	if resp.status != http.StatusOK {
		t.Fatalf("refresh: status = %d, body %s", resp.status, resp.body)
	}
	var refreshed session
	resp.decode(t, &refreshed)
	if refreshed.Token == "" || refreshed.Token == token {
		t.Fatalf("refresh returned token %q, want a new one", refreshed.Token)
	}
	if got, want := jwtClaims(t, refreshed.Token)["exp"], float64(clock.Now().Add(time.Minute).Unix()); got != want {
		t.Errorf("refreshed exp = %v, want %v", got, want)
	}

	clock.Advance(30 * time.Second) // the old token has expired, the new one has not
	if resp := call(t, http.MethodGet, srv.URL, path, token, nil); resp.status != http.StatusUnauthorized {
		t.Errorf("old token: status = %d, want 401", resp.status)
	}
	if resp := call(t, http.MethodGet, srv.URL, path, refreshed.Token, nil); resp.status != http.StatusOK {
		t.Errorf("refreshed token: status = %d, want 200", resp.status)
	}
	if resp := call(t, http.MethodPut, srv.URL, "/auth/token", "", nil); resp.status != http.StatusUnauthorized {
		t.Errorf("refresh without token: status = %d, want 401", resp.status)
	}

	st := srv.Stats()
	if st.Logins != 1 || st.Refreshes != 1 {
		t.Errorf("Stats() Logins = %d, Refreshes = %d, want 1 and 1", st.Logins, st.Refreshes)
	}
}

func TestExpireTokens(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Users: 1})
	token := login(t, srv)
	path := "/users/authentication" + query("userId", "user0001@example.com")

	srv.ExpireTokens()
	if resp := call(t, http.MethodGet, srv.URL, path, token, nil); resp.status != http.StatusUnauthorized {
		t.Errorf("revoked token: status = %d, want 401", resp.status)
	}
	if resp := call(t, http.MethodPut, srv.URL, "/auth/token", token, nil); resp.status != http.StatusUnauthorized {
		t.Errorf("refresh of a revoked token: status = %d, want 401", resp.status)
	}
	if resp := call(t, http.MethodGet, srv.URL, path, login(t, srv), nil); resp.status != http.StatusOK {
		t.Errorf("token from a new login: status = %d, want 200", resp.status)
	}
}

func TestSetCredentials(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{})
	old := map[string]string{"username": "admin", "password": "odin-sim-password"}
	renewed := map[string]string{"username": "admin", "password": "new-password"}

	srv.SetCredentials("admin", "new-password")
	if resp := call(t, http.MethodPost, srv.URL, "/auth/token", "", old); resp.status != http.StatusUnauthorized {
		t.Errorf("old password: status = %d, want 401", resp.status)
	}
	if resp := call(t, http.MethodPost, srv.URL, "/auth/token", "", renewed); resp.status != http.StatusOK {
		t.Errorf("new password: status = %d, want 200", resp.status)
	}

	srv.SetLoginPasswordChangeRequired(true)
	if resp := call(t, http.MethodPost, srv.URL, "/auth/token", "", renewed); resp.status != http.StatusPaymentRequired {
		t.Errorf("change required: status = %d, want 402", resp.status)
	}
	srv.SetLoginPasswordChangeRequired(false)
	if resp := call(t, http.MethodPost, srv.URL, "/auth/token", "", renewed); resp.status != http.StatusOK {
		t.Errorf("change no longer required: status = %d, want 200", resp.status)
	}
}
