package odin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewClientBaseURL(t *testing.T) {
	tests := []struct {
		name    string
		baseURL string
		want    string
		wantErr string
	}{
		{name: "plain", baseURL: "https://odin.example.com/api/v2", want: "https://odin.example.com/api/v2"},
		{name: "trailing slash", baseURL: "https://odin.example.com/api/v2/", want: "https://odin.example.com/api/v2"},
		{name: "upper-case host", baseURL: "HTTPS://Odin.Example.COM:8443/api/v2", want: "https://odin.example.com:8443/api/v2"},
		{name: "surrounding space", baseURL: "  http://127.0.0.1:8089/api/v2 ", want: "http://127.0.0.1:8089/api/v2"},
		{name: "user info", baseURL: "https://admin:hunter22@odin.example.com/api/v2", wantErr: "must not contain user info"},
		{name: "no scheme", baseURL: "odin.example.com/api/v2", wantErr: "scheme"},
		{name: "ftp scheme", baseURL: "ftp://odin.example.com/api/v2", wantErr: "scheme"},
		{name: "no host", baseURL: "https:///api/v2", wantErr: "host is missing"},
		{name: "query", baseURL: "https://odin.example.com/api/v2?x=1", wantErr: "query or fragment"},
		{name: "fragment", baseURL: "https://odin.example.com/api/v2#top", wantErr: "query or fragment"},
		{name: "unparsable", baseURL: "https://admin:hunter22@odin.example.com:port/api", wantErr: "invalid base URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.baseURL, "admin", "hunter22")
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("NewClient(%q) = nil error, want one containing %q", tt.baseURL, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter22") {
					t.Errorf("error %q contains the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewClient(%q): %v", tt.baseURL, err)
			}
			if got := c.BaseURL(); got != tt.want {
				t.Errorf("BaseURL() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewClientRejectsInvalidInput(t *testing.T) {
	tests := []struct {
		name     string
		username string
		password string
		opt      Option
		wantErr  string
	}{
		{name: "empty username", password: "pw", wantErr: "username is empty"},
		{name: "empty password", username: "admin", wantErr: "password is empty"},
		{name: "nil HTTP client", username: "admin", password: "pw", opt: WithHTTPClient(nil), wantErr: "HTTP client is nil"},
		{name: "zero timeout", username: "admin", password: "pw", opt: WithTimeout(0), wantErr: "greater than 0"},
		{name: "negative timeout", username: "admin", password: "pw", opt: WithTimeout(-time.Second), wantErr: "greater than 0"},
		{name: "empty user agent", username: "admin", password: "pw", opt: WithUserAgent(" "), wantErr: "user agent"},
		{name: "user agent with newline", username: "admin", password: "pw", opt: WithUserAgent("a\r\nX-Evil: 1"), wantErr: "user agent"},
		{name: "nil limiter", username: "admin", password: "pw", opt: WithLimiter(nil), wantErr: "limiter is nil"},
		{name: "nil clock", username: "admin", password: "pw", opt: WithClock(nil), wantErr: "clock is nil"},
		{name: "nil observer", username: "admin", password: "pw", opt: WithObserver(nil), wantErr: "observer is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient("https://odin.example.com/api/v2", tt.username, tt.password, tt.opt)
			if err == nil {
				t.Fatalf("NewClient = nil error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestClientSendsHeaders(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("PUT /users/passwords", respondJSON(http.StatusOK, map[string]any{}))
	c := f.newClient(WithUserAgent("odinreset-test/1.0"))

	if err := c.SetWebPassword(context.Background(), "user1@example.com", "N3w-Pass!word"); err != nil {
		t.Fatalf("SetWebPassword: %v", err)
	}

	login := f.recorded("POST /auth/token")
	if len(login) != 1 {
		t.Fatalf("got %d logins, want 1", len(login))
	}
	if got := login[0].Header.Get("Authorization"); got != "" {
		t.Errorf("login sent Authorization %q, want none", got)
	}
	if diff := cmp.Diff(map[string]string{"username": testUsername, "password": testPassword}, decodeBody(t, login[0].Body)); diff != "" {
		t.Errorf("login body mismatch (-want +got):\n%s", diff)
	}

	put := f.recorded("PUT /users/passwords")
	if len(put) != 1 {
		t.Fatalf("got %d PUT /users/passwords, want 1", len(put))
	}
	for _, r := range []recordedRequest{login[0], put[0]} {
		for header, want := range map[string]string{
			"Content-Type": "application/json",
			"Accept":       "application/json",
			"User-Agent":   "odinreset-test/1.0",
		} {
			if got := r.Header.Get(header); got != want {
				t.Errorf("%s %s: header %s = %q, want %q", r.Method, r.Path, header, got, want)
			}
		}
	}
	if got := put[0].Header.Get("Authorization"); got != "Bearer opaque-token-1" {
		t.Errorf("Authorization = %q, want %q", got, "Bearer opaque-token-1")
	}
}

// oddUserIDs are user IDs that need escaping in a query string.
var oddUserIDs = []string{
	"a+b@example.com",
	"first last@example.com",
	"jürgen.ßtraße@exämple.com",
	"100%&x=y#frag@example.com",
}

func TestClientEscapesUserIDsInQueries(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("GET /users/authentication", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"userId": r.URL.Query().Get("userId"), "userName": "sipuser"})
	})
	c := f.newClient()

	for _, userID := range oddUserIDs {
		t.Run(userID, func(t *testing.T) {
			if _, err := c.SIPUserName(context.Background(), userID); err != nil {
				t.Fatalf("SIPUserName: %v", err)
			}
			requests := f.recorded("GET /users/authentication")
			last := requests[len(requests)-1]
			if diff := cmp.Diff([]string{userID}, last.Query["userId"]); diff != "" {
				t.Errorf("userId query value mismatch (-want +got):\n%s", diff)
			}
			if len(last.Query) != 1 {
				t.Errorf("query has %d parameters (%q), want only userId", len(last.Query), last.RawQuery)
			}
			if strings.Contains(userID, "+") && !strings.Contains(last.RawQuery, "%2B") {
				t.Errorf("raw query %q does not escape '+' as %%2B", last.RawQuery)
			}
		})
	}
}

func TestClientEscapesUserIDsInBodies(t *testing.T) {
	f := newFakeOdin(t)
	for _, endpoint := range []string{"PUT /users/authentication", "PUT /users/passwords", "PUT /users/portal-passcode"} {
		f.handle(endpoint, respondJSON(http.StatusOK, []any{}))
	}
	c := f.newClient()
	ctx := context.Background()

	for _, userID := range oddUserIDs {
		t.Run(userID, func(t *testing.T) {
			if err := c.SetSIPPassword(ctx, userID, "sip user", `p"w\d<>&`); err != nil {
				t.Fatalf("SetSIPPassword: %v", err)
			}
			if err := c.SetWebPassword(ctx, userID, "we+b pw"); err != nil {
				t.Fatalf("SetWebPassword: %v", err)
			}
			if err := c.SetPortalPasscode(ctx, userID, "007123"); err != nil {
				t.Fatalf("SetPortalPasscode: %v", err)
			}

			wants := map[string]map[string]string{
				"PUT /users/authentication":  {"userId": userID, "userName": "sip user", "newPassword": `p"w\d<>&`},
				"PUT /users/passwords":       {"userId": userID, "newPassword": "we+b pw"},
				"PUT /users/portal-passcode": {"userId": userID, "newPasscode": "007123"},
			}
			for endpoint, want := range wants {
				requests := f.recorded(endpoint)
				got := decodeBody(t, requests[len(requests)-1].Body)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s body mismatch (-want +got):\n%s", endpoint, diff)
				}
				if raw := requests[len(requests)-1].RawQuery; raw != "" {
					t.Errorf("%s sent query %q, want none", endpoint, raw)
				}
			}
		})
	}
}

func TestSetSIPPasswordOmitsEmptyUserName(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("PUT /users/authentication", respondJSON(http.StatusOK, map[string]any{"userId": "u1", "userName": "u1", "newPassword": ""}))
	c := f.newClient()

	if err := c.SetSIPPassword(context.Background(), "u1@example.com", "", "Sip-Pw-1234"); err != nil {
		t.Fatalf("SetSIPPassword: %v", err)
	}

	got := decodeBody(t, f.recorded("PUT /users/authentication")[0].Body)
	want := map[string]string{"userId": "u1@example.com", "newPassword": "Sip-Pw-1234"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("body mismatch (-want +got):\n%s", diff)
	}
}

func TestSIPUserName(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{name: "documented shape", body: `{"userId":"u1@example.com","userName":"5135550101"}`, want: "5135550101"},
		{name: "numeric user name", body: `{"userId":"u1@example.com","userName":5135550101}`, want: "5135550101"},
		{name: "no user name", body: `{"userId":"u1@example.com"}`, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle("GET /users/authentication", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(tt.body))
			})
			c := f.newClient()

			got, err := c.SIPUserName(context.Background(), "u1@example.com")
			if err != nil {
				t.Fatalf("SIPUserName: %v", err)
			}
			if got != tt.want {
				t.Errorf("SIPUserName = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPortalPasscodeInfo(t *testing.T) {
	tests := []struct {
		name string
		body string
		want PasscodeInfo
	}{
		{
			name: "documented shape",
			body: `{"isLoginDisabled": false, "expirationDays": 30, "passcode": "*****", "userId": "u1@example.com"}`,
			want: PasscodeInfo{UserID: "u1@example.com", ExpirationDays: 30},
		},
		{
			name: "strings and no user ID",
			body: `{"isLoginDisabled": "true", "expirationDays": "90"}`,
			want: PasscodeInfo{UserID: "u1@example.com", IsLoginDisabled: true, ExpirationDays: 90},
		},
		{
			name: "no expiration",
			body: `{"isLoginDisabled": false, "expirationDays": null, "userId": "u1@example.com"}`,
			want: PasscodeInfo{UserID: "u1@example.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle("GET /users/portal-passcode", func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(tt.body))
			})
			c := f.newClient()

			got, err := c.PortalPasscodeInfo(context.Background(), "u1@example.com")
			if err != nil {
				t.Fatalf("PortalPasscodeInfo: %v", err)
			}
			if diff := cmp.Diff(&tt.want, got); diff != "" {
				t.Errorf("PortalPasscodeInfo mismatch (-want +got):\n%s", diff)
			}
			if q := f.recorded("GET /users/portal-passcode")[0].Query.Get("userId"); q != "u1@example.com" {
				t.Errorf("userId query = %q, want %q", q, "u1@example.com")
			}
		})
	}
}

func TestGroupUsers(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("GET /users", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`[
			{"userId": "1001@example.com", "serviceProviderId": "ent 1", "groupId": "grp+1", "firstName": "Ada",
			 "lastName": "L", "phoneNumber": "5135550101", "extension": "0101", "department": null, "inTrunkGroup": false},
			{"userId": "jürgen@example.com", "serviceProviderId": "ent 1", "groupId": "grp+1", "firstName": "Jürgen",
			 "lastName": null, "phoneNumber": 5135550102, "extension": 102}
		]`))
	})
	c := f.newClient()

	got, err := c.GroupUsers(context.Background(), "ent 1", "grp+1")
	if err != nil {
		t.Fatalf("GroupUsers: %v", err)
	}

	want := []User{
		{UserID: "1001@example.com", ServiceProviderID: "ent 1", GroupID: "grp+1", FirstName: "Ada", LastName: "L", PhoneNumber: "5135550101", Extension: "0101"},
		{UserID: "jürgen@example.com", ServiceProviderID: "ent 1", GroupID: "grp+1", FirstName: "Jürgen", PhoneNumber: "5135550102", Extension: "102"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GroupUsers mismatch (-want +got):\n%s", diff)
	}
	query := f.recorded("GET /users")[0].Query
	if diff := cmp.Diff(map[string][]string{"serviceProviderId": {"ent 1"}, "groupId": {"grp+1"}}, map[string][]string(query)); diff != "" {
		t.Errorf("query mismatch (-want +got):\n%s", diff)
	}
}

func TestGroupUsersEmptyGroup(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("GET /users", respondJSON(http.StatusOK, []any{}))
	c := f.newClient()

	got, err := c.GroupUsers(context.Background(), "sp1", "grp1")
	if err != nil {
		t.Fatalf("GroupUsers: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("GroupUsers returned %d users, want 0", len(got))
	}
}

func TestUserDetail(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *UserDetail
	}{
		{
			name: "group device",
			body: `{"userId": "u1@example.com", "firstName": "Ada", "accessDeviceEndpoint": {"accessDevice":
				{"deviceName": "u1-phone", "deviceLevel": "Group", "deviceType": "Polycom VVX 450", "macAddress": "0004f2000001"},
				"linePort": "u1@example.com"}}`,
			want: &UserDetail{UserID: "u1@example.com", Device: &Device{Name: "u1-phone", Level: "Group", Type: "Polycom VVX 450"}},
		},
		{
			name: "service provider device",
			body: `{"userId": "u1@example.com", "accessDeviceEndpoint": {"accessDevice":
				{"deviceName": "shared", "deviceLevel": "Service Provider", "deviceType": "Generic SIP Phone"}}}`,
			want: &UserDetail{UserID: "u1@example.com", Device: &Device{Name: "shared", Level: "Service Provider", Type: "Generic SIP Phone"}},
		},
		{
			name: "no device endpoint",
			body: `{"userId": "u1@example.com", "firstName": "Ada"}`,
			want: &UserDetail{UserID: "u1@example.com"},
		},
		{
			name: "null device endpoint",
			body: `{"userId": "u1@example.com", "accessDeviceEndpoint": null}`,
			want: &UserDetail{UserID: "u1@example.com"},
		},
		{
			name: "service provider and group",
			body: `{"userId": "u1@example.com", "serviceProviderId": "sp1", "groupId": "grp1"}`,
			want: &UserDetail{UserID: "u1@example.com", ServiceProviderID: "sp1", GroupID: "grp1"},
		},
		{
			name: "list of one user",
			body: `[{"userId": "u1@example.com", "accessDeviceEndpoint": {"accessDevice": {"deviceName": "d1", "deviceLevel": "Group", "deviceType": "T"}}}]`,
			want: &UserDetail{UserID: "u1@example.com", Device: &Device{Name: "d1", Level: "Group", Type: "T"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle("GET /users", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(tt.body)) })
			c := f.newClient()

			got, err := c.UserDetail(context.Background(), "u1@example.com")
			if err != nil {
				t.Fatalf("UserDetail: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("UserDetail mismatch (-want +got):\n%s", diff)
			}
			query := f.recorded("GET /users")[0].Query
			if diff := cmp.Diff(map[string][]string{"userId": {"u1@example.com"}}, map[string][]string(query)); diff != "" {
				t.Errorf("query mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUserDetailUnknownUser(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("GET /users", respondJSON(http.StatusNotFound, map[string]any{"error": "[Error 4008] User not found: nobody@example.com", "status": 404}))
	c := f.newClient()

	_, err := c.UserDetail(context.Background(), "nobody@example.com")

	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Fatalf("UserDetail error = %v, want a 404 *APIError", err)
	}
	if !IsPermanent(err) || IsRuleRejection(err) || IsTransient(err) {
		t.Errorf("404: IsPermanent=%v IsRuleRejection=%v IsTransient=%v, want true false false",
			IsPermanent(err), IsRuleRejection(err), IsTransient(err))
	}
}

func TestDeviceActions(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		call     func(*Client) error
	}{
		{name: "rebuild", endpoint: "POST /groups/devices/rebuild", call: func(c *Client) error {
			return c.RebuildDevice(context.Background(), "sp 1", "grp+1", "u1-phone")
		}},
		{name: "reset", endpoint: "POST /groups/devices/reset", call: func(c *Client) error {
			return c.ResetDevice(context.Background(), "sp 1", "grp+1", "u1-phone")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle(tt.endpoint, respondJSON(http.StatusOK, map[string]any{}))
			c := f.newClient()

			if err := tt.call(c); err != nil {
				t.Fatalf("%s: %v", tt.endpoint, err)
			}
			got := decodeBody(t, f.recorded(tt.endpoint)[0].Body)
			want := map[string]string{"serviceProviderId": "sp 1", "groupId": "grp+1", "deviceName": "u1-phone"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientRejectsEmptyArguments(t *testing.T) {
	f := newFakeOdin(t)
	c := f.newClient()
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{name: "SetSIPPassword user", call: func() error { return c.SetSIPPassword(ctx, "", "u", "pw") }},
		{name: "SetSIPPassword value", call: func() error { return c.SetSIPPassword(ctx, "u1", "u", "") }},
		{name: "SetWebPassword user", call: func() error { return c.SetWebPassword(ctx, "", "pw") }},
		{name: "SetPortalPasscode value", call: func() error { return c.SetPortalPasscode(ctx, "u1", "") }},
		{name: "SIPUserName", call: func() error { _, err := c.SIPUserName(ctx, ""); return err }},
		{name: "PortalPasscodeInfo", call: func() error { _, err := c.PortalPasscodeInfo(ctx, ""); return err }},
		{name: "UserDetail", call: func() error { _, err := c.UserDetail(ctx, ""); return err }},
		{name: "GroupUsers", call: func() error { _, err := c.GroupUsers(ctx, "sp1", ""); return err }},
		{name: "RebuildDevice", call: func() error { return c.RebuildDevice(ctx, "sp1", "grp1", "") }},
		{name: "GeneratePasswords n", call: func() error { _, err := c.GeneratePasswords(ctx, "sp1", "grp1", 0); return err }},
		{name: "GeneratePasscodes group", call: func() error { _, err := c.GeneratePasscodes(ctx, "sp1", "", 1); return err }},
		{name: "GenerateSIPPasswords n", call: func() error { _, err := c.GenerateSIPPasswords(ctx, "sp1", "grp1", -1); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("got nil error, want an invalid-argument error")
			}
			if IsTransient(err) || IsPermanent(err) || IsAuthFailure(err) {
				t.Errorf("invalid argument %v classified as transient, permanent or auth failure", err)
			}
		})
	}
	if got := len(f.recorded("")); got != 0 {
		t.Errorf("sent %d requests for invalid arguments, want 0", got)
	}
}

// countingLimiter counts Wait calls and fails them with err when set.
type countingLimiter struct {
	mu    sync.Mutex
	waits int
	err   error
}

func (l *countingLimiter) Wait(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waits++
	return l.err
}

func (l *countingLimiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waits
}

func TestLimiterWaitsBeforeEveryRequest(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("PUT /users/passwords", respondJSON(http.StatusOK, map[string]any{}))
	limiter := &countingLimiter{}
	c := f.newClient(WithLimiter(limiter))
	ctx := context.Background()

	for range 3 {
		if err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789"); err != nil {
			t.Fatalf("SetWebPassword: %v", err)
		}
	}
	f.expireTokens() // the next call gets 401, logs in again and resends
	if err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789"); err != nil {
		t.Fatalf("SetWebPassword after token expiry: %v", err)
	}

	if got, want := limiter.count(), len(f.recorded("")); got != want {
		t.Errorf("limiter waited %d times for %d requests", got, want)
	}
	if got := len(f.recorded("")); got != 7 { // login, 3 PUTs, rejected PUT, login, PUT
		t.Errorf("sent %d requests, want 7", got)
	}
}

func TestLimiterErrorStopsTheRequest(t *testing.T) {
	f := newFakeOdin(t)
	limitErr := errors.New("fleet paused: Odin answered 429")
	c := f.newClient(WithLimiter(&countingLimiter{err: limitErr}))

	err := c.SetWebPassword(context.Background(), "u1@example.com", "Pw-123456789")

	if !errors.Is(err, limitErr) {
		t.Fatalf("error = %v, want it to wrap the limiter's error", err)
	}
	if got := len(f.recorded("")); got != 0 {
		t.Errorf("sent %d requests, want 0", got)
	}
}

func TestBeforeSendRunsAfterTheLimiter(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("PUT /users/passwords", respondJSON(http.StatusOK, map[string]any{}))
	limiter := &countingLimiter{}
	c := f.newClient(WithLimiter(limiter))
	stop := errors.New("job cancelled")

	var checks int
	allow := BeforeSend(context.Background(), func(_ context.Context, waited time.Duration) error {
		checks++
		if waited < 0 {
			t.Errorf("waited = %v, want a duration of zero or more", waited)
		}
		return nil
	})
	if err := c.SetWebPassword(allow, "u1@example.com", "Pw-123456789"); err != nil {
		t.Fatalf("SetWebPassword: %v", err)
	}
	if checks != 1 {
		t.Errorf("check ran %d times for one API request and one login, want 1: logins serve every caller and skip it", checks)
	}

	deny := BeforeSend(context.Background(), func(context.Context, time.Duration) error { return stop })
	sentBefore := len(f.recorded(""))
	err := c.SetWebPassword(deny, "u1@example.com", "Pw-123456789")
	if !errors.Is(err, stop) {
		t.Fatalf("error = %v, want it to wrap the check's error", err)
	}
	if got := len(f.recorded("")) - sentBefore; got != 0 {
		t.Errorf("sent %d requests after the check refused, want 0", got)
	}
	if limiter.count() != sentBefore+1 {
		t.Errorf("limiter waited %d times, want %d: the check runs after the wait", limiter.count(), sentBefore+1)
	}
}

func TestObserverSeesEveryExchange(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("GET /users/authentication", respondJSON(http.StatusOK, map[string]any{"userName": "u1"}))
	f.handle("PUT /users/authentication", respondJSON(http.StatusBadRequest, map[string]any{"error": "[Error 4410] Service is not assigned to this subscriber: Authentication"}))
	f.handle("GET /users", func(w http.ResponseWriter, _ *http.Request) { resetConnection(w) })

	var mu sync.Mutex
	var calls []Call
	c := f.newClient(WithObserver(func(call Call) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call)
	}))
	ctx := context.Background()

	_, _ = c.SIPUserName(ctx, "u1@example.com")
	_ = c.SetSIPPassword(ctx, "u1@example.com", "u1", "Sip-Pw-1234")
	_, _ = c.GroupUsers(ctx, "sp1", "grp1")

	type summary struct {
		Endpoint string
		Status   int
		Failed   bool
	}
	var got []summary
	for _, call := range calls {
		got = append(got, summary{call.Endpoint, call.Status, call.Err != nil})
		if call.Duration <= 0 {
			t.Errorf("%s: duration %v, want > 0", call.Endpoint, call.Duration)
		}
		if call.Err != nil && strings.Contains(call.Err.Error(), "serviceProviderId") {
			t.Errorf("%s: error %q contains the query string", call.Endpoint, call.Err)
		}
	}
	want := []summary{
		{"POST /auth/token", 200, false},
		{"GET /users/authentication", 200, false},
		{"PUT /users/authentication", 400, false},
		{"GET /users", 0, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("observed calls mismatch (-want +got):\n%s", diff)
	}
}

func TestClientStringHidesCredentials(t *testing.T) {
	c, err := NewClient("https://odin.example.com/api/v2", "admin", "hunter22")
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	for _, format := range []string{"%v", "%+v", "%s"} {
		if text := fmt.Sprintf(format, c); strings.Contains(text, "hunter22") {
			t.Errorf("formatting with %s shows the password: %s", format, text)
		}
	}
}

// TestLoginNotFoundNamesTheBaseURL: a base URL without its /api/v2 part makes the login
// return 404. The error must point at the base URL, not at the credentials.
func TestLoginNotFoundNamesTheBaseURL(t *testing.T) {
	f := newFakeOdin(t)
	f.setLoginHandler(respondJSON(http.StatusNotFound, map[string]any{"error": "Not found: /auth/token", "status": 404}))
	c := f.newClient()

	err := c.SetWebPassword(context.Background(), "u1@example.com", "Pw-123456789")

	var login *LoginError
	if !errors.As(err, &login) || !login.WrongURL() {
		t.Fatalf("error = %v, want a *LoginError with WrongURL", err)
	}
	if !strings.Contains(err.Error(), "no login endpoint at this base URL") || !strings.Contains(err.Error(), "/api/v2") {
		t.Errorf("error %q does not point at the base URL", err)
	}
}

// TestSIPGeneratorKeepsValuesBeforeAFailure: a SIP generator that ignores limit needs one
// request per value. When one fails, the values of the requests that worked come back
// with the error, so a batch does not start over on an unreliable Odin.
func TestSIPGeneratorKeepsValuesBeforeAFailure(t *testing.T) {
	f := newFakeOdin(t)
	var calls atomic.Int64
	f.handle("GET /sip-password/generate", func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n == 4 {
			respondJSON(http.StatusInternalServerError, map[string]any{"error": "Internal server error"})(w, r)
			return
		}
		respondJSON(http.StatusOK, map[string]any{"password": fmt.Sprintf("Sip-Value-%d", n)})(w, r)
	})
	c := f.newClient()

	values, err := c.GenerateSIPPasswords(context.Background(), "sp1", "grp1", 5)

	if err == nil {
		t.Fatal("GenerateSIPPasswords = nil error, want the 500")
	}
	// Call 1 asked for limit=5 and got one value (kept); the single-value calls after it
	// run in parallel, so every call but the failed fourth one returned a value.
	var want []string
	for n := range calls.Load() {
		if n+1 != 4 {
			want = append(want, fmt.Sprintf("Sip-Value-%d", n+1))
		}
	}
	slices.Sort(values)
	if !slices.Equal(values, want) {
		t.Errorf("values = %q, want %q", values, want)
	}
}
