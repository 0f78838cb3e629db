package odin

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/odin/odintest"
)

// simUserIDs are extra simulator users whose IDs need escaping. Their local parts are
// long enough that a random SIP password practically never contains them.
var simUserIDs = []string{"ann+lee@example.com", "first last@example.com", "jürgen.weiß@exämple.com"}

// startSim starts the Odin simulator and returns it with a client logged in as its admin.
func startSim(t *testing.T, cfg odintest.Config, opts ...Option) (*odintest.Server, *Client) {
	t.Helper()
	cfg.Username, cfg.Password = testUsername, testPassword
	srv, err := odintest.NewServer(cfg)
	if err != nil {
		t.Fatalf("odintest.NewServer: %v", err)
	}
	t.Cleanup(srv.Close)

	opts = append([]Option{WithTimeout(5 * time.Second)}, opts...)
	c, err := NewClient(srv.URL, testUsername, testPassword, opts...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return srv, c
}

// TestSimResetEveryKind runs the whole reset of each credential kind for every user:
// generate, look up the SIP user name where needed, set, and compare with the
// simulator's state.
func TestSimResetEveryKind(t *testing.T) {
	tests := []struct {
		name     string
		kind     odintest.Kind
		generate func(c *Client, ctx context.Context, sp, group string, n int) ([]string, error)
		set      func(c *Client, ctx context.Context, userID, value string) error
	}{
		{
			name:     "sip",
			kind:     odintest.KindSIP,
			generate: (*Client).GenerateSIPPasswords,
			set: func(c *Client, ctx context.Context, userID, value string) error {
				userName, err := c.SIPUserName(ctx, userID)
				if err != nil {
					return err
				}
				return c.SetSIPPassword(ctx, userID, userName, value)
			},
		},
		{name: "voicemail", kind: odintest.KindVoicemail, generate: (*Client).GeneratePasscodes, set: (*Client).SetPortalPasscode},
		{name: "web", kind: odintest.KindWeb, generate: (*Client).GeneratePasswords, set: (*Client).SetWebPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := startSim(t, odintest.Config{Users: 5, ExtraUsers: simUserIDs})
			ctx := context.Background()

			users, err := c.GroupUsers(ctx, srv.ServiceProviderID(), srv.GroupID())
			if err != nil {
				t.Fatalf("GroupUsers: %v", err)
			}
			values, err := tt.generate(c, ctx, srv.ServiceProviderID(), srv.GroupID(), len(users))
			if err != nil {
				t.Fatalf("generating %d values: %v", len(users), err)
			}
			for i, user := range users {
				if err := tt.set(c, ctx, user.UserID, values[i]); err != nil {
					t.Errorf("setting the value of %s: %v", user.UserID, err)
				}
			}

			for i, user := range users {
				value, setCount, ok := srv.Credential(user.UserID, tt.kind)
				if !ok || value != values[i] || setCount != 1 {
					t.Errorf("%s: simulator holds a value equal to the sent one: %v, set %d times (ok %v); want equal, set once",
						user.UserID, value == values[i], setCount, ok)
				}
			}
			if got := srv.Stats().Logins; got != 1 {
				t.Errorf("logins = %d, want 1", got)
			}
		})
	}
}

func TestSimGroupUsers(t *testing.T) {
	srv, c := startSim(t, odintest.Config{ServiceProviderID: "ent 1", GroupID: "grp+1", Users: 3, ExtraUsers: simUserIDs})

	users, err := c.GroupUsers(context.Background(), "ent 1", "grp+1")
	if err != nil {
		t.Fatalf("GroupUsers: %v", err)
	}

	var ids []string
	for _, u := range users {
		ids = append(ids, u.UserID)
		if u.ServiceProviderID != "ent 1" || u.GroupID != "grp+1" {
			t.Errorf("%s: service provider %q, group %q; want %q, %q", u.UserID, u.ServiceProviderID, u.GroupID, "ent 1", "grp+1")
		}
	}
	if diff := cmp.Diff(srv.Users(), ids); diff != "" {
		t.Errorf("user IDs mismatch (-want +got):\n%s", diff)
	}

	onlyIDs, err := c.GroupUserIDs(context.Background(), "ent 1", "grp+1")
	if err != nil {
		t.Fatalf("GroupUserIDs: %v", err)
	}
	if diff := cmp.Diff(srv.Users(), onlyIDs); diff != "" {
		t.Errorf("GroupUserIDs mismatch (-want +got):\n%s", diff)
	}
}

func TestSimGenerators(t *testing.T) {
	const n = 50
	tests := []struct {
		name         string
		cfg          odintest.Config
		generate     func(c *Client, ctx context.Context, sp, group string, n int) ([]string, error)
		endpoint     string
		wantRequests int // for two calls
	}{
		{name: "passwords", generate: (*Client).GeneratePasswords, endpoint: "GET /password/generate", wantRequests: 2},
		{name: "passcodes", generate: (*Client).GeneratePasscodes, endpoint: "GET /passcode/generate", wantRequests: 2},
		{name: "SIP passwords with limit", cfg: odintest.Config{SIPGeneratorAcceptsLimit: true},
			generate: (*Client).GenerateSIPPasswords, endpoint: "GET /sip-password/generate", wantRequests: 2},
		{name: "SIP passwords without limit", generate: (*Client).GenerateSIPPasswords,
			endpoint: "GET /sip-password/generate", wantRequests: 2 * n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := startSim(t, tt.cfg)
			ctx := context.Background()

			var all []string
			for range 2 {
				values, err := tt.generate(c, ctx, srv.ServiceProviderID(), srv.GroupID(), n)
				if err != nil {
					t.Fatalf("generate: %v", err)
				}
				if len(values) != n {
					t.Fatalf("got %d values, want %d", len(values), n)
				}
				all = append(all, values...)
			}

			if got := srv.Stats().Requests[tt.endpoint]; got != tt.wantRequests {
				t.Errorf("%s requests = %d, want %d", tt.endpoint, got, tt.wantRequests)
			}
			slices.Sort(all)
			if got := len(slices.Compact(all)); got != 2*n {
				t.Errorf("got %d distinct values of %d", got, 2*n)
			}
		})
	}
}

func TestSimPasscodesAreDigitStrings(t *testing.T) {
	srv, c := startSim(t, odintest.Config{PasscodeMinLength: 4, PasscodeMaxLength: 4})

	values, err := c.GeneratePasscodes(context.Background(), srv.ServiceProviderID(), srv.GroupID(), 500)
	if err != nil {
		t.Fatalf("GeneratePasscodes: %v", err)
	}

	leadingZero := false
	for _, v := range values {
		if len(v) != 4 || strings.Trim(v, "0123456789") != "" {
			t.Errorf("passcode of length %d is not 4 digits", len(v))
		}
		leadingZero = leadingZero || strings.HasPrefix(v, "0")
	}
	if !leadingZero {
		t.Error("no passcode of 500 kept a leading zero")
	}
}

func TestSimGenerateLimitTooLarge(t *testing.T) {
	srv, c := startSim(t, odintest.Config{MaxGenerateLimit: 10})

	_, err := c.GeneratePasswords(context.Background(), srv.ServiceProviderID(), srv.GroupID(), 11)

	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("error = %v, want a 400 *APIError", err)
	}
	if !IsPermanent(err) || IsRuleRejection(err) {
		t.Errorf("IsPermanent = %v, IsRuleRejection = %v; want true, false", IsPermanent(err), IsRuleRejection(err))
	}
}

func TestSimUserDetailAndDevices(t *testing.T) {
	srv, c := startSim(t, odintest.Config{
		Users: 3,
		Devices: odintest.DeviceLayout{
			NoDevice:             []string{"user0002@example.com"},
			ServiceProviderLevel: []string{"user0003@example.com"},
		},
	})
	ctx := context.Background()
	sp, group := srv.ServiceProviderID(), srv.GroupID()

	detail, err := c.UserDetail(ctx, "user0001@example.com")
	if err != nil {
		t.Fatalf("UserDetail: %v", err)
	}
	simDevice, _ := srv.UserDevice("user0001@example.com")
	want := &UserDetail{UserID: "user0001@example.com", ServiceProviderID: "sp1", GroupID: "grp1", Device: &Device{Name: simDevice.Name, Level: "Group", Type: simDevice.Type}}
	if diff := cmp.Diff(want, detail); diff != "" {
		t.Errorf("UserDetail mismatch (-want +got):\n%s", diff)
	}

	if err := c.RebuildDevice(ctx, sp, group, detail.Device.Name); err != nil {
		t.Errorf("RebuildDevice: %v", err)
	}
	if err := c.ResetDevice(ctx, sp, group, detail.Device.Name); err != nil {
		t.Errorf("ResetDevice: %v", err)
	}
	if rebuilt, reset := srv.DeviceOps(detail.Device.Name); rebuilt != 1 || reset != 1 {
		t.Errorf("device ops = %d rebuilt, %d reset; want 1, 1", rebuilt, reset)
	}

	noDevice, err := c.UserDetail(ctx, "user0002@example.com")
	if err != nil {
		t.Fatalf("UserDetail without device: %v", err)
	}
	if noDevice.Device != nil {
		t.Errorf("Device = %+v, want nil", noDevice.Device)
	}

	spDetail, err := c.UserDetail(ctx, "user0003@example.com")
	if err != nil {
		t.Fatalf("UserDetail with a service provider device: %v", err)
	}
	if spDetail.Device == nil || spDetail.Device.Level != "Service Provider" {
		t.Fatalf("Device = %+v, want a service provider level device", spDetail.Device)
	}
	err = c.RebuildDevice(ctx, sp, group, spDetail.Device.Name)
	if !IsPermanent(err) {
		t.Errorf("rebuilding a service provider device: %v, want a permanent error", err)
	}

	_, err = c.UserDetail(ctx, "nobody@example.com")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || !IsPermanent(err) {
		t.Errorf("unknown user: %v, want a permanent 404", err)
	}
}

func TestSimPortalPasscodeInfo(t *testing.T) {
	_, c := startSim(t, odintest.Config{Users: 2, WithoutVoiceMessaging: []string{"user0002@example.com"}})
	ctx := context.Background()

	info, err := c.PortalPasscodeInfo(ctx, "user0001@example.com")
	if err != nil {
		t.Fatalf("PortalPasscodeInfo: %v", err)
	}
	if diff := cmp.Diff(&PasscodeInfo{UserID: "user0001@example.com", ExpirationDays: 30}, info); diff != "" {
		t.Errorf("PortalPasscodeInfo mismatch (-want +got):\n%s", diff)
	}

	_, err = c.PortalPasscodeInfo(ctx, "user0002@example.com")
	if !IsPermanent(err) || IsRuleRejection(err) || !strings.Contains(err.Error(), "4410") {
		t.Errorf("user without voice messaging: %v, want a permanent 4410 error that is no rule rejection", err)
	}
}

func TestSimServiceNotAssigned(t *testing.T) {
	srv, c := startSim(t, odintest.Config{
		Users:                 1,
		WithoutAuthentication: []string{"user0001@example.com"},
		WithoutVoiceMessaging: []string{"user0001@example.com"},
	})
	ctx := context.Background()
	passcodes, err := c.GeneratePasscodes(ctx, srv.ServiceProviderID(), srv.GroupID(), 1)
	if err != nil {
		t.Fatalf("GeneratePasscodes: %v", err)
	}

	errs := map[string]error{
		"SetSIPPassword":    c.SetSIPPassword(ctx, "user0001@example.com", "user0001", "Abcdef-12345"),
		"SetPortalPasscode": c.SetPortalPasscode(ctx, "user0001@example.com", passcodes[0]),
	}
	_, errs["SIPUserName"] = c.SIPUserName(ctx, "user0001@example.com")

	for name, err := range errs {
		if !IsPermanent(err) || IsRuleRejection(err) || IsTransient(err) {
			t.Errorf("%s: %v; want permanent, no rule rejection", name, err)
		}
		if err != nil && !strings.Contains(err.Error(), "[Error 4410] Service is not assigned") {
			t.Errorf("%s: error %q lacks the BroadWorks text", name, err)
		}
	}
}

func TestSimRuleRejection(t *testing.T) {
	tests := []struct {
		name     string
		kind     odintest.Kind
		generate func(c *Client, ctx context.Context, sp, group string, n int) ([]string, error)
		set      func(c *Client, ctx context.Context, userID, value string) error
	}{
		{name: "sip", kind: odintest.KindSIP, generate: (*Client).GenerateSIPPasswords,
			set: func(c *Client, ctx context.Context, userID, value string) error {
				return c.SetSIPPassword(ctx, userID, "user0001", value)
			}},
		{name: "voicemail", kind: odintest.KindVoicemail, generate: (*Client).GeneratePasscodes, set: (*Client).SetPortalPasscode},
		{name: "web", kind: odintest.KindWeb, generate: (*Client).GeneratePasswords, set: (*Client).SetWebPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := startSim(t, odintest.Config{Users: 1, RejectFirst: []string{"user0001@example.com"}})
			ctx := context.Background()
			values, err := tt.generate(c, ctx, srv.ServiceProviderID(), srv.GroupID(), 2)
			if err != nil {
				t.Fatalf("generate: %v", err)
			}

			err = tt.set(c, ctx, "user0001@example.com", values[0])
			if !IsRuleRejection(err) || !IsPermanent(err) {
				t.Fatalf("first value: %v, want a rule rejection", err)
			}
			if strings.Contains(err.Error(), values[0]) {
				t.Errorf("error %q contains the rejected value", err)
			}
			if err := tt.set(c, ctx, "user0001@example.com", values[1]); err != nil {
				t.Fatalf("second value: %v", err)
			}

			value, setCount, _ := srv.Credential("user0001@example.com", tt.kind)
			if value != values[1] || setCount != 1 {
				t.Errorf("simulator holds the second value: %v, set %d times; want true, 1", value == values[1], setCount)
			}
		})
	}
}

func TestSimInvalidValues(t *testing.T) {
	_, c := startSim(t, odintest.Config{Users: 1})
	ctx := context.Background()
	tests := []struct {
		name     string
		call     func() error
		wantRule bool
	}{
		{name: "passcode with letters", call: func() error { return c.SetPortalPasscode(ctx, "user0001@example.com", "12ab56") }, wantRule: true},
		{name: "passcode too short", call: func() error { return c.SetPortalPasscode(ctx, "user0001@example.com", "123") }, wantRule: true},
		{name: "web password too short", call: func() error { return c.SetWebPassword(ctx, "user0001@example.com", "Ab1!") }, wantRule: true},
		{name: "SIP password with user name", call: func() error {
			return c.SetSIPPassword(ctx, "user0001@example.com", "user0001", "Xuser0001-Pw")
		}, wantRule: true},
		{name: "wrong SIP user name", call: func() error {
			return c.SetSIPPassword(ctx, "user0001@example.com", "someone", "Abcdef-12345")
		}},
		{name: "unknown user", call: func() error { return c.SetWebPassword(ctx, "nobody@example.com", "Abcdef-12345!xyz") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !IsPermanent(err) {
				t.Fatalf("error = %v, want a permanent error", err)
			}
			if got := IsRuleRejection(err); got != tt.wantRule {
				t.Errorf("IsRuleRejection(%v) = %v, want %v", err, got, tt.wantRule)
			}
		})
	}
}

func TestSimLoginFailures(t *testing.T) {
	t.Run("bad credentials", func(t *testing.T) {
		srv, c := startSim(t, odintest.Config{Users: 1})
		srv.SetCredentials(testUsername, "another-password")

		_, err := c.GroupUsers(context.Background(), srv.ServiceProviderID(), srv.GroupID())
		if !IsAuthFailure(err) || errors.Is(err, ErrPasswordChangeRequired) {
			t.Fatalf("error = %v, want a *LoginError without password change", err)
		}
		if strings.Contains(err.Error(), testPassword) {
			t.Errorf("error %q contains the admin password", err)
		}

		srv.SetCredentials(testUsername, testPassword)
		if _, err := c.GroupUsers(context.Background(), srv.ServiceProviderID(), srv.GroupID()); err != nil {
			t.Errorf("GroupUsers after fixing the credentials: %v", err)
		}
	})

	t.Run("password change required", func(t *testing.T) {
		srv, c := startSim(t, odintest.Config{Users: 1, LoginPasswordChangeRequired: true})

		err := c.Login(context.Background())
		if !IsAuthFailure(err) || !errors.Is(err, ErrPasswordChangeRequired) {
			t.Fatalf("error = %v, want a *LoginError wrapping ErrPasswordChangeRequired", err)
		}

		srv.SetLoginPasswordChangeRequired(false)
		if err := c.Login(context.Background()); err != nil {
			t.Errorf("Login after the password change: %v", err)
		}
	})

	t.Run("server error at login", func(t *testing.T) {
		srv, c := startSim(t, odintest.Config{Users: 1, Faults: odintest.Faults{Error500: 1, IncludeAuth: true}})

		err := c.Login(context.Background())
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 || apiErr.Path != "/auth/token" {
			t.Fatalf("error = %v, want a 500 *APIError of /auth/token", err)
		}
		if !IsTransient(err) || IsAuthFailure(err) {
			t.Errorf("IsTransient = %v, IsAuthFailure = %v; want true, false", IsTransient(err), IsAuthFailure(err))
		}
		if got := srv.Stats().Faults["500"]; got != 1 {
			t.Errorf("simulator injected %d faults, want 1", got)
		}
	})
}

func TestSimExpiredTokensCauseOneLogin(t *testing.T) {
	const callers = 50
	srv, c := startSim(t, odintest.Config{Users: 1})
	ctx := context.Background()
	if err := c.Login(ctx); err != nil {
		t.Fatalf("Login: %v", err)
	}
	srv.ExpireTokens()

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			_, err := c.SIPUserName(ctx, "user0001@example.com")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)

	for err := range errs {
		if err != nil {
			t.Errorf("SIPUserName: %v", err)
		}
	}
	if got := srv.Stats().Logins; got != 2 {
		t.Errorf("logins = %d, want 2 (the first and one after the tokens expired)", got)
	}
}

func TestSimTokenRefresh(t *testing.T) {
	clock := newFakeClock()
	srv, c := startSim(t, odintest.Config{Users: 1, TokenLifetime: time.Hour, Now: clock.Now}, WithClock(clock.Now))
	ctx := context.Background()
	call := func() {
		t.Helper()
		if _, err := c.SIPUserName(ctx, "user0001@example.com"); err != nil {
			t.Fatalf("SIPUserName: %v", err)
		}
	}

	call()
	clock.Advance(30 * time.Minute)
	call()
	if st := srv.Stats(); st.Logins != 1 || st.Refreshes != 0 {
		t.Errorf("after 30 minutes: %d logins, %d refreshes; want 1, 0", st.Logins, st.Refreshes)
	}

	clock.Advance(20 * time.Minute) // 10 of 60 minutes left
	call()
	if st := srv.Stats(); st.Logins != 1 || st.Refreshes != 1 {
		t.Errorf("after 50 minutes: %d logins, %d refreshes; want 1, 1", st.Logins, st.Refreshes)
	}

	clock.Advance(2 * time.Hour) // the refreshed token has expired too
	call()
	st := srv.Stats()
	if st.Logins != 2 || st.Refreshes != 1 {
		t.Errorf("after expiry: %d logins, %d refreshes; want 2, 1", st.Logins, st.Refreshes)
	}
	if got := st.Statuses["GET /users/authentication"][http.StatusUnauthorized]; got != 0 {
		t.Errorf("%d calls got 401, want 0 because the client renews before expiry", got)
	}
}

func TestSimRateLimit(t *testing.T) {
	tests := []struct {
		name     string
		httpDate bool
	}{
		{name: "Retry-After seconds"},
		{name: "Retry-After HTTP date", httpDate: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The clock does not move, so the second request within the simulator's
			// 1-second window is rejected with a wait of exactly 1 second.
			clock := newFakeClock()
			srv, c := startSim(t, odintest.Config{Users: 1, RateLimit: 1, RetryAfterHTTPDate: tt.httpDate, Now: clock.Now}, WithClock(clock.Now))
			ctx := context.Background()
			if err := c.Login(ctx); err != nil {
				t.Fatalf("Login: %v", err)
			}

			_, err := c.SIPUserName(ctx, "user0001@example.com")

			var rateErr *RateLimitError
			if !errors.As(err, &rateErr) {
				t.Fatalf("error = %v, want a *RateLimitError", err)
			}
			if retry, ok := RetryAfter(err); !ok || retry != time.Second {
				t.Errorf("RetryAfter = %v, %v; want 1s, true", retry, ok)
			}
			if !IsTransient(err) {
				t.Error("IsTransient = false, want true")
			}
			if got := srv.Stats().TooManyRequests; got != 1 {
				t.Errorf("simulator sent %d 429s, want 1", got)
			}

			clock.Advance(time.Second)
			if _, err := c.SIPUserName(ctx, "user0001@example.com"); err != nil {
				t.Errorf("SIPUserName after the wait: %v", err)
			}
		})
	}
}

func TestSimFaults(t *testing.T) {
	tests := []struct {
		name       string
		faults     odintest.Faults
		wantStatus int // 0 for a transport error
		wantText   string
	}{
		{name: "500", faults: odintest.Faults{Error500: 1}, wantStatus: 500, wantText: "500 Internal Server Error: Internal server error"},
		{name: "502 HTML", faults: odintest.Faults{Error502HTML: 1}, wantStatus: 502, wantText: "502 Bad Gateway: 502 Bad Gateway 502 Bad Gateway nginx"},
		{name: "reset", faults: odintest.Faults{Reset: 1}, wantText: "Odin PUT /users/passwords: "},
		{name: "hang", faults: odintest.Faults{Hang: 1, HangDuration: time.Minute}, wantText: "no response within 200ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := startSim(t, odintest.Config{Users: 1}, WithTimeout(200*time.Millisecond))
			ctx := context.Background()
			if err := c.Login(ctx); err != nil {
				t.Fatalf("Login: %v", err)
			}
			srv.SetFaults(tt.faults)

			err := c.SetWebPassword(ctx, "user0001@example.com", "Abcdef-12345!xyz")

			if !IsTransient(err) {
				t.Fatalf("error = %v, want a transient error", err)
			}
			var apiErr *APIError
			if got := errors.As(err, &apiErr); got != (tt.wantStatus != 0) || (got && apiErr.StatusCode != tt.wantStatus) {
				t.Errorf("error = %v, want status %d", err, tt.wantStatus)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
			if strings.Contains(err.Error(), "Abcdef-12345!xyz") {
				t.Errorf("error %q contains the password", err)
			}
			if _, setCount, _ := srv.Credential("user0001@example.com", odintest.KindWeb); setCount != 0 {
				t.Errorf("the faulted PUT was applied %d times, want 0", setCount)
			}
		})
	}
}

func TestSimObserverAndLimiter(t *testing.T) {
	var mu sync.Mutex
	counts := map[string]int{}
	limiter := &countingLimiter{}
	srv, c := startSim(t, odintest.Config{Users: 2}, WithLimiter(limiter), WithObserver(func(call Call) {
		mu.Lock()
		defer mu.Unlock()
		counts[call.Endpoint]++
	}))
	ctx := context.Background()

	if _, err := c.GroupUsers(ctx, srv.ServiceProviderID(), srv.GroupID()); err != nil {
		t.Fatalf("GroupUsers: %v", err)
	}
	if _, err := c.GeneratePasswords(ctx, srv.ServiceProviderID(), srv.GroupID(), 2); err != nil {
		t.Fatalf("GeneratePasswords: %v", err)
	}

	st := srv.Stats()
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(st.Requests, counts); diff != "" {
		t.Errorf("observed calls differ from the simulator's count (-simulator +observer):\n%s", diff)
	}
	if got := limiter.count(); got != st.Total {
		t.Errorf("limiter waited %d times for %d requests", got, st.Total)
	}
}

func TestSimFailedLoginDropsRejectedToken(t *testing.T) {
	srv, client := startSim(t, odintest.Config{Users: 1})
	ctx := context.Background()
	user := odintest.SeededUserID(1)
	if _, err := client.SIPUserName(ctx, user); err != nil {
		t.Fatalf("first call: %v", err)
	}

	username, password := srv.Login()
	srv.SetCredentials(username, "changed-by-someone")
	srv.ExpireTokens()
	if _, err := client.SIPUserName(ctx, user); !IsAuthFailure(err) {
		t.Fatalf("call with broken login: err = %v, want a login failure", err)
	}
	srv.SetCredentials(username, password)
	srv.ResetStats()

	if _, err := client.SIPUserName(ctx, user); err != nil {
		t.Fatalf("call after the login works again: %v", err)
	}
	stats := srv.Stats()
	if n := stats.Statuses["GET /users/authentication"][http.StatusUnauthorized]; n != 0 {
		t.Errorf("%d requests went out with the rejected token, want 0", n)
	}
	if stats.Logins != 1 {
		t.Errorf("%d logins, want 1", stats.Logins)
	}
}
