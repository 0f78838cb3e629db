package odintest_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/odinreset/odinreset/odin/odintest"
)

// classes reports which character classes s contains.
func classes(s string) (upper, lower, digit, symbol bool) {
	for _, r := range s {
		switch {
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsLower(r):
			lower = true
		case unicode.IsDigit(r):
			digit = true
		default:
			symbol = true
		}
	}
	return upper, lower, digit, symbol
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func TestGeneratorsHonourRules(t *testing.T) {
	t.Parallel()
	const draws = 1000
	tests := []struct {
		name   string
		cfg    odintest.Config
		path   string
		plural string
		check  func(value string) string // returns what is wrong, or ""
	}{
		{
			name:   "web passwords default rules",
			path:   "/password/generate" + query("serviceProviderId", "sp1", "groupId", "grp1", "limit", strconv.Itoa(draws)),
			plural: "passwords",
			check: func(v string) string {
				upper, lower, digit, symbol := classes(v)
				if len(v) != 18 || !upper || !lower || !digit || !symbol {
					return "want 18 characters with upper, lower, digit and symbol"
				}
				return ""
			},
		},
		{
			name:   "web passwords longer minimum",
			cfg:    odintest.Config{PasswordMinLength: 24},
			path:   "/password/generate" + query("serviceProviderId", "sp1", "groupId", "grp1", "limit", strconv.Itoa(draws)),
			plural: "passwords",
			check: func(v string) string {
				if len(v) != 24 {
					return "want 24 characters"
				}
				return ""
			},
		},
		{
			name:   "passcodes default range",
			path:   "/passcode/generate" + query("serviceProviderId", "sp1", "groupId", "grp1", "limit", strconv.Itoa(draws)),
			plural: "passcodes",
			check: func(v string) string {
				if !isDigits(v) || len(v) < 6 || len(v) > 8 {
					return "want 6 to 8 digits"
				}
				return ""
			},
		},
		{
			name:   "passcodes custom range",
			cfg:    odintest.Config{PasscodeMinLength: 4, PasscodeMaxLength: 4},
			path:   "/passcode/generate" + query("serviceProviderId", "sp1", "groupId", "grp1", "limit", strconv.Itoa(draws)),
			plural: "passcodes",
			check: func(v string) string {
				if !isDigits(v) || len(v) != 4 {
					return "want 4 digits"
				}
				return ""
			},
		},
		{
			name:   "SIP passwords with limit",
			cfg:    odintest.Config{SIPGeneratorAcceptsLimit: true, SIPPasswordLength: 16},
			path:   "/sip-password/generate" + query("limit", strconv.Itoa(draws)),
			plural: "passwords",
			check: func(v string) string {
				upper, lower, _, _ := classes(v)
				if len(v) != 16 || !upper || !lower {
					return "want 16 characters with upper and lower"
				}
				return ""
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, tt.cfg)
			token := login(t, srv)

			resp := call(t, http.MethodGet, srv.URL, tt.path, token, nil)
			if resp.status != http.StatusOK {
				t.Fatalf("status = %d, body %s", resp.status, resp.body)
			}
			var got map[string][]string
			resp.decode(t, &got)
			values := got[tt.plural]
			if len(values) != draws {
				t.Fatalf("got %d values under %q, want %d", len(values), tt.plural, draws)
			}

			seen := make(map[string]bool)
			for _, v := range values {
				if problem := tt.check(v); problem != "" {
					t.Errorf("generated value of %d characters: %s", len(v), problem)
				}
				seen[v] = true
			}
			if len(seen) < draws*9/10 {
				t.Errorf("only %d distinct values in %d draws", len(seen), draws)
			}
		})
	}
}

func TestGeneratedPasscodeLeadingZeros(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{})
	token := login(t, srv)
	resp := call(t, http.MethodGet, srv.URL, "/passcode/generate"+query("serviceProviderId", "sp1", "groupId", "grp1", "limit", "1000"), token, nil)
	var got struct {
		Passcodes []string `json:"passcodes"`
	}
	resp.decode(t, &got)

	lengths := make(map[int]bool)
	leadingZero := false
	for _, p := range got.Passcodes {
		lengths[len(p)] = true
		leadingZero = leadingZero || strings.HasPrefix(p, "0")
	}
	if !leadingZero {
		t.Error("no passcode in 1000 starts with 0")
	}
	if len(lengths) != 3 {
		t.Errorf("passcode lengths %v, want all of 6, 7 and 8", lengths)
	}
}

func TestGeneratedValuesAreAccepted(t *testing.T) {
	t.Parallel()
	const users = 200
	srv := startServer(t, odintest.Config{Users: users})
	token := login(t, srv)

	web := call(t, http.MethodGet, srv.URL, "/password/generate"+query("serviceProviderId", "sp1", "groupId", "grp1", "limit", strconv.Itoa(users)), token, nil)
	passcodes := call(t, http.MethodGet, srv.URL, "/passcode/generate"+query("serviceProviderId", "sp1", "groupId", "grp1", "limit", strconv.Itoa(users)), token, nil)
	var webValues struct{ Passwords []string }
	var passcodeValues struct{ Passcodes []string }
	web.decode(t, &webValues)
	passcodes.decode(t, &passcodeValues)

	for i, userID := range srv.Users() {
		var sip struct{ Password string }
		call(t, http.MethodGet, srv.URL, "/sip-password/generate", token, nil).decode(t, &sip)

		puts := []struct {
			path string
			body map[string]string
		}{
			{"/users/authentication", map[string]string{"userId": userID, "userName": strings.TrimSuffix(userID, "@example.com"), "newPassword": sip.Password}},
			{"/users/passwords", map[string]string{"userId": userID, "newPassword": webValues.Passwords[i]}},
			{"/users/portal-passcode", map[string]string{"userId": userID, "newPasscode": passcodeValues.Passcodes[i]}},
		}
		for _, put := range puts {
			if resp := call(t, http.MethodPut, srv.URL, put.path, token, put.body); resp.status != http.StatusOK {
				t.Errorf("PUT %s for %s: status = %d, body %s", put.path, userID, resp.status, resp.body)
			}
		}
	}

	st := srv.Stats()
	for kind, want := range map[odintest.Kind]int{odintest.KindSIP: users, odintest.KindWeb: users, odintest.KindVoicemail: users} {
		if got := st.Generated[kind]; got != want {
			t.Errorf("Stats().Generated[%s] = %d, want %d", kind, got, want)
		}
	}
}

func TestGeneratorShapes(t *testing.T) {
	t.Parallel()
	group := []string{"serviceProviderId", "sp1", "groupId", "grp1"}
	withLimit := func(n string) []string { return append(append([]string{}, group...), "limit", n) }
	tests := []struct {
		name       string
		cfg        odintest.Config
		path       string
		wantStatus int
		wantKey    string // the JSON key of a 200 body
		wantCount  int    // values under wantKey when it is a list
		wantError  string
	}{
		{name: "web single", path: "/password/generate" + query(group...), wantStatus: 200, wantKey: "password"},
		{name: "web limit 1", path: "/password/generate" + query(withLimit("1")...), wantStatus: 200, wantKey: "passwords", wantCount: 1},
		{name: "web limit at max", cfg: odintest.Config{MaxGenerateLimit: 50}, path: "/password/generate" + query(withLimit("50")...), wantStatus: 200, wantKey: "passwords", wantCount: 50},
		{name: "web limit above max", cfg: odintest.Config{MaxGenerateLimit: 50}, path: "/password/generate" + query(withLimit("51")...), wantStatus: 400, wantError: "at most 50"},
		{name: "web limit default max", path: "/password/generate" + query(withLimit("1001")...), wantStatus: 400, wantError: "at most 1000"},
		{name: "web limit zero", path: "/password/generate" + query(withLimit("0")...), wantStatus: 400, wantError: "Invalid limit"},
		{name: "web limit not a number", path: "/password/generate" + query(withLimit("ten")...), wantStatus: 400, wantError: "Invalid limit"},
		{name: "web missing group", path: "/password/generate" + query("serviceProviderId", "sp1"), wantStatus: 400, wantError: "groupId"},
		{name: "web missing service provider", path: "/password/generate", wantStatus: 400, wantError: "serviceProviderId"},
		{name: "web wrong service provider", path: "/password/generate" + query("serviceProviderId", "sp9", "groupId", "grp1"), wantStatus: 404, wantError: "Service provider not found: sp9"},
		{name: "web wrong group", path: "/password/generate" + query("serviceProviderId", "sp1", "groupId", "grp9"), wantStatus: 404, wantError: "Group not found: grp9"},
		{name: "passcode single", path: "/passcode/generate" + query(group...), wantStatus: 200, wantKey: "passcode"},
		{name: "passcode limit", path: "/passcode/generate" + query(withLimit("7")...), wantStatus: 200, wantKey: "passcodes", wantCount: 7},
		{name: "passcode limit above max", path: "/passcode/generate" + query(withLimit("1001")...), wantStatus: 400},
		{name: "SIP single", path: "/sip-password/generate", wantStatus: 200, wantKey: "password"},
		{name: "SIP ignores limit", path: "/sip-password/generate" + query("limit", "10"), wantStatus: 200, wantKey: "password"},
		{name: "SIP ignores limit above max", path: "/sip-password/generate" + query("limit", "5000"), wantStatus: 200, wantKey: "password"},
		{name: "SIP with group", path: "/sip-password/generate" + query(group...), wantStatus: 200, wantKey: "password"},
		{name: "SIP wrong service provider", path: "/sip-password/generate" + query("serviceProviderId", "sp9"), wantStatus: 404},
		{name: "SIP accepts limit", cfg: odintest.Config{SIPGeneratorAcceptsLimit: true}, path: "/sip-password/generate" + query("limit", "10"), wantStatus: 200, wantKey: "passwords", wantCount: 10},
		{name: "SIP accepts limit above max", cfg: odintest.Config{SIPGeneratorAcceptsLimit: true}, path: "/sip-password/generate" + query("limit", "1001"), wantStatus: 400},
		{name: "SIP accepts limit without limit", cfg: odintest.Config{SIPGeneratorAcceptsLimit: true}, path: "/sip-password/generate", wantStatus: 200, wantKey: "password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, tt.cfg)
			resp := call(t, http.MethodGet, srv.URL, tt.path, login(t, srv), nil)
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", resp.status, tt.wantStatus, resp.body)
			}
			if tt.wantStatus != http.StatusOK {
				if e := resp.apiError(t); !strings.Contains(e.Error, tt.wantError) || e.Status != tt.wantStatus {
					t.Errorf("error body = %+v, want status %d and error containing %q", e, tt.wantStatus, tt.wantError)
				}
				return
			}

			var body map[string]any
			resp.decode(t, &body)
			if len(body) != 1 {
				t.Errorf("body has keys %v, want only %q", body, tt.wantKey)
			}
			switch v := body[tt.wantKey].(type) {
			case string:
				if tt.wantCount != 0 || v == "" {
					t.Errorf("%q = %q, want a list of %d", tt.wantKey, v, tt.wantCount)
				}
			case []any:
				if len(v) != tt.wantCount {
					t.Errorf("%q has %d values, want %d", tt.wantKey, len(v), tt.wantCount)
				}
			default:
				t.Errorf("%q = %#v, want a string or a list", tt.wantKey, v)
			}
		})
	}
}
