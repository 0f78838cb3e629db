package odintest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/odin/odintest"
)

const (
	goodSIPPassword = "8!01T_8Hk{R6"
	goodWebPassword = "Xq7]}3yLw(9a^Rk2#p"
)

func TestSetters(t *testing.T) {
	t.Parallel()
	cfg := odintest.Config{
		Users:                 3,
		WithoutAuthentication: []string{"user0002@example.com"},
		WithoutVoiceMessaging: []string{"user0003@example.com"},
	}
	tests := []struct {
		name       string
		method     string
		path       string
		body       any
		wantStatus int
		wantError  string // substring of the error, for failures
		wantKind   odintest.Kind
		wantValue  string // the stored value after a success
	}{
		{name: "SIP set", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "user0001@example.com", "userName": "user0001", "newPassword": goodSIPPassword}, wantStatus: 200, wantKind: odintest.KindSIP, wantValue: goodSIPPassword},
		{name: "SIP unknown user", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "ghost@example.com", "userName": "ghost", "newPassword": goodSIPPassword}, wantStatus: 404, wantError: "[Error 4008] User not found: ghost@example.com"},
		{name: "SIP without service", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "user0002@example.com", "userName": "user0002", "newPassword": goodSIPPassword}, wantStatus: 400, wantError: "[Error 4410] Service is not assigned to this subscriber: Authentication"},
		{name: "SIP missing userId", method: "PUT", path: "/users/authentication", body: map[string]string{"userName": "user0001", "newPassword": goodSIPPassword}, wantStatus: 400, wantError: "userId"},
		{name: "SIP missing userName", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "user0001@example.com", "newPassword": goodSIPPassword}, wantStatus: 400, wantError: "userName"},
		{name: "SIP wrong userName", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "user0001@example.com", "userName": "user0001@example.com", "newPassword": goodSIPPassword}, wantStatus: 400, wantError: "userName"},
		{name: "SIP missing password", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "user0001@example.com", "userName": "user0001"}, wantStatus: 400, wantError: "newPassword"},
		{name: "SIP too short", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "user0001@example.com", "userName": "user0001", "newPassword": "aB1!x"}, wantStatus: 400, wantError: "at least 6 characters"},
		{name: "SIP too long", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "user0001@example.com", "userName": "user0001", "newPassword": "aB" + strings.Repeat("x", 59)}, wantStatus: 400, wantError: "at most 60"},
		{name: "SIP no uppercase", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "user0001@example.com", "userName": "user0001", "newPassword": "abcdef12!"}, wantStatus: 400, wantError: "uppercase"},
		{name: "SIP contains user name", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "user0001@example.com", "userName": "user0001", "newPassword": "Xy!USER0001"}, wantStatus: 400, wantError: "authentication user name"},
		{name: "SIP with space", method: "PUT", path: "/users/authentication", body: map[string]string{"userId": "user0001@example.com", "userName": "user0001", "newPassword": "Ab cdefgh"}, wantStatus: 400, wantError: "printable ASCII"},
		{name: "SIP password as number", method: "PUT", path: "/users/authentication", body: `{"userId":"user0001@example.com","userName":"user0001","newPassword":123456}`, wantStatus: 400, wantError: "newPassword must be a string"},

		{name: "web set", method: "PUT", path: "/users/passwords", body: map[string]string{"userId": "user0002@example.com", "newPassword": goodWebPassword}, wantStatus: 200, wantKind: odintest.KindWeb, wantValue: goodWebPassword},
		{name: "web unknown user", method: "PUT", path: "/users/passwords", body: map[string]string{"userId": "ghost@example.com", "newPassword": goodWebPassword}, wantStatus: 404, wantError: "[Error 4008] User not found: ghost@example.com"},
		{name: "web too short", method: "PUT", path: "/users/passwords", body: map[string]string{"userId": "user0001@example.com", "newPassword": "Xq7]}3yLw(9"}, wantStatus: 400, wantError: "at least 12 characters"},
		{name: "web no symbol", method: "PUT", path: "/users/passwords", body: map[string]string{"userId": "user0001@example.com", "newPassword": "Xq73yLw9aRk2p"}, wantStatus: 400, wantError: "non-alphanumeric"},
		{name: "web no digit", method: "PUT", path: "/users/passwords", body: map[string]string{"userId": "user0001@example.com", "newPassword": "Xq]}yLw(a^Rk#p"}, wantStatus: 400, wantError: "digit"},
		{name: "web no lowercase", method: "PUT", path: "/users/passwords", body: map[string]string{"userId": "user0001@example.com", "newPassword": "XQ7]}3YLW(9A^RK2#P"}, wantStatus: 400, wantError: "lowercase"},
		{name: "web contains user ID", method: "PUT", path: "/users/passwords", body: map[string]string{"userId": "user0001@example.com", "newPassword": "X1!user0001@example.com"}, wantStatus: 400, wantError: "user ID"},
		{name: "web missing password", method: "PUT", path: "/users/passwords", body: map[string]string{"userId": "user0001@example.com"}, wantStatus: 400, wantError: "newPassword"},
		{name: "web empty body", method: "PUT", path: "/users/passwords", body: " ", wantStatus: 400, wantError: "empty"},
		{name: "web body is a list", method: "PUT", path: "/users/passwords", body: `["user0001@example.com"]`, wantStatus: 400, wantError: "not a JSON object"},

		{name: "passcode set", method: "PUT", path: "/users/portal-passcode", body: map[string]string{"userId": "user0001@example.com", "newPasscode": "0048213"}, wantStatus: 200, wantKind: odintest.KindVoicemail, wantValue: "0048213"},
		{name: "passcode unknown user", method: "PUT", path: "/users/portal-passcode", body: map[string]string{"userId": "ghost@example.com", "newPasscode": "0048213"}, wantStatus: 404, wantError: "[Error 4008] User not found"},
		{name: "passcode without service", method: "PUT", path: "/users/portal-passcode", body: map[string]string{"userId": "user0003@example.com", "newPasscode": "0048213"}, wantStatus: 400, wantError: "[Error 4410] Service is not assigned to this subscriber: Voice Messaging User"},
		{name: "passcode letters", method: "PUT", path: "/users/portal-passcode", body: map[string]string{"userId": "user0001@example.com", "newPasscode": "12a4567"}, wantStatus: 400, wantError: "digits only"},
		{name: "passcode too short", method: "PUT", path: "/users/portal-passcode", body: map[string]string{"userId": "user0001@example.com", "newPasscode": "12345"}, wantStatus: 400, wantError: "6 to 8 digits"},
		{name: "passcode too long", method: "PUT", path: "/users/portal-passcode", body: map[string]string{"userId": "user0001@example.com", "newPasscode": "123456789"}, wantStatus: 400, wantError: "6 to 8 digits"},
		{name: "passcode as number", method: "PUT", path: "/users/portal-passcode", body: `{"userId":"user0001@example.com","newPasscode":1234567}`, wantStatus: 400, wantError: "newPasscode must be a string"},
		{name: "passcode missing", method: "PUT", path: "/users/portal-passcode", body: map[string]string{"userId": "user0001@example.com"}, wantStatus: 400, wantError: "newPasscode"},

		{name: "SIP user name", method: "GET", path: "/users/authentication" + query("userId", "user0001@example.com"), wantStatus: 200},
		{name: "SIP user name unknown user", method: "GET", path: "/users/authentication" + query("userId", "ghost@example.com"), wantStatus: 404, wantError: "[Error 4008] User not found: ghost@example.com"},
		{name: "SIP user name without service", method: "GET", path: "/users/authentication" + query("userId", "user0002@example.com"), wantStatus: 400, wantError: "[Error 4410] Service is not assigned to this subscriber: Authentication"},
		{name: "SIP user name missing userId", method: "GET", path: "/users/authentication", wantStatus: 400, wantError: "userId"},
		{name: "passcode settings", method: "GET", path: "/users/portal-passcode" + query("userId", "user0001@example.com"), wantStatus: 200},
		{name: "passcode settings without service", method: "GET", path: "/users/portal-passcode" + query("userId", "user0003@example.com"), wantStatus: 400, wantError: "Voice Messaging User"},
		{name: "unknown path", method: "GET", path: "/users/nothing", wantStatus: 404, wantError: "Not found"},
		{name: "wrong method", method: "DELETE", path: "/users/passwords", wantStatus: 405, wantError: "Method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, cfg)
			resp := call(t, tt.method, srv.URL, tt.path, login(t, srv), tt.body)

			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", resp.status, tt.wantStatus, resp.body)
			}
			if tt.wantError != "" {
				if e := resp.apiError(t); !strings.Contains(e.Error, tt.wantError) || e.Status != tt.wantStatus {
					t.Errorf("error body = %+v, want status %d and error containing %q", e, tt.wantStatus, tt.wantError)
				}
				for _, secret := range []string{goodSIPPassword, goodWebPassword, "0048213"} {
					if strings.Contains(string(resp.body), secret) {
						t.Errorf("error body %s contains the value sent", resp.body)
					}
				}
				if got := srv.Credentials(); len(got) != 0 {
					t.Errorf("Credentials() after a failure = %v, want none", got)
				}
			}
			if tt.wantKind != "" {
				userID := tt.body.(map[string]string)["userId"]
				value, count, ok := srv.Credential(userID, tt.wantKind)
				if value != tt.wantValue || count != 1 || !ok {
					t.Errorf("Credential(%s, %s) = %q, %d, %v, want %q, 1, true", userID, tt.wantKind, value, count, ok, tt.wantValue)
				}
			}
		})
	}
}

func TestSetterResponses(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Users: 1})
	token := login(t, srv)
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		want   string
	}{
		{"SIP set blanks the password", "PUT", "/users/authentication", map[string]string{"userId": "user0001@example.com", "userName": "user0001", "newPassword": goodSIPPassword}, `{"userId":"user0001@example.com","userName":"user0001","newPassword":""}`},
		{"passcode set returns an empty list", "PUT", "/users/portal-passcode", map[string]string{"userId": "user0001@example.com", "newPasscode": "123456"}, `[]`},
		{"web set", "PUT", "/users/passwords", map[string]string{"userId": "user0001@example.com", "newPassword": goodWebPassword}, `{"userId":"user0001@example.com"}`},
		{"SIP user name", "GET", "/users/authentication" + query("userId", "user0001@example.com"), nil, `{"userId":"user0001@example.com","userName":"user0001"}`},
		{"passcode settings are masked", "GET", "/users/portal-passcode" + query("userId", "user0001@example.com"), nil, `{"expirationDays":30,"isLoginDisabled":false,"passcode":"*****","userId":"user0001@example.com"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := call(t, tt.method, srv.URL, tt.path, token, tt.body)
			if diff := cmp.Diff(tt.want, strings.TrimSpace(string(resp.body))); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
			if got := resp.header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
		})
	}
}

func TestRejectFirst(t *testing.T) {
	t.Parallel()
	const userID = "user0002@example.com"
	tests := []struct {
		name      string
		kind      odintest.Kind
		path      string
		body      func(value string) map[string]string
		first     string
		second    string
		wantError string
	}{
		{
			name: "SIP",
			kind: odintest.KindSIP,
			path: "/users/authentication",
			body: func(v string) map[string]string {
				return map[string]string{"userId": userID, "userName": "user0002", "newPassword": v}
			},
			first:     goodSIPPassword,
			second:    "Qz9!fT_2mK{e",
			wantError: "[Error 4003] Invalid authentication password: the password has been used before (password history)",
		},
		{
			name:      "web",
			kind:      odintest.KindWeb,
			path:      "/users/passwords",
			body:      func(v string) map[string]string { return map[string]string{"userId": userID, "newPassword": v} },
			first:     goodWebPassword,
			second:    "Pz9!fT_2mK{eRt5$uW",
			wantError: "[Error 4003] Invalid password: the password has been used before (password history)",
		},
		{
			name:      "voicemail",
			kind:      odintest.KindVoicemail,
			path:      "/users/portal-passcode",
			body:      func(v string) map[string]string { return map[string]string{"userId": userID, "newPasscode": v} },
			first:     "246810",
			second:    "13579135",
			wantError: "[Error 4003] Invalid passcode: the passcode has been used before (passcode history)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, odintest.Config{Users: 2, RejectFirst: []string{userID}})
			token := login(t, srv)

			steps := []struct {
				value      string
				wantStatus int
			}{
				{tt.first, http.StatusBadRequest},
				{tt.first, http.StatusBadRequest}, // a rejected value stays rejected
				{tt.second, http.StatusOK},
				{tt.second, http.StatusOK}, // resending the value in place is accepted
			}
			for i, step := range steps {
				resp := call(t, http.MethodPut, srv.URL, tt.path, token, tt.body(step.value))
				if resp.status != step.wantStatus {
					t.Fatalf("PUT %d: status = %d, want %d (body %s)", i+1, resp.status, step.wantStatus, resp.body)
				}
				if step.wantStatus == http.StatusBadRequest {
					if e := resp.apiError(t); e.Error != tt.wantError {
						t.Errorf("PUT %d: error = %q, want %q", i+1, e.Error, tt.wantError)
					}
				}
			}

			want := map[string]map[odintest.Kind]odintest.Credential{
				userID: {tt.kind: {Value: tt.second, SetCount: 2, History: []string{tt.second, tt.second}}},
			}
			if diff := cmp.Diff(want, srv.Credentials()); diff != "" {
				t.Errorf("Credentials() mismatch (-want +got):\n%s", diff)
			}

			// Other users accept their first value.
			other := tt.body(tt.first)
			other["userId"] = "user0001@example.com"
			if other["userName"] != "" {
				other["userName"] = "user0001"
			}
			if resp := call(t, http.MethodPut, srv.URL, tt.path, token, other); resp.status != http.StatusOK {
				t.Errorf("first PUT for another user: status = %d, want 200 (body %s)", resp.status, resp.body)
			}
		})
	}
}

func TestCredentialLookup(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Users: 1})
	token := login(t, srv)
	for _, code := range []string{"111111", "222222"} {
		call(t, http.MethodPut, srv.URL, "/users/portal-passcode", token, map[string]string{"userId": "user0001@example.com", "newPasscode": code})
	}

	tests := []struct {
		name      string
		userID    string
		kind      odintest.Kind
		wantValue string
		wantCount int
		wantOK    bool
	}{
		{"set twice", "user0001@example.com", odintest.KindVoicemail, "222222", 2, true},
		{"never set", "user0001@example.com", odintest.KindSIP, "", 0, true},
		{"unknown user", "ghost@example.com", odintest.KindSIP, "", 0, false},
		{"unknown kind", "user0001@example.com", odintest.Kind("fax"), "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value, count, ok := srv.Credential(tt.userID, tt.kind)
			if value != tt.wantValue || count != tt.wantCount || ok != tt.wantOK {
				t.Errorf("Credential() = %q, %d, %v, want %q, %d, %v", value, count, ok, tt.wantValue, tt.wantCount, tt.wantOK)
			}
		})
	}

	want := map[string]map[odintest.Kind]odintest.Credential{
		"user0001@example.com": {odintest.KindVoicemail: {Value: "222222", SetCount: 2, History: []string{"111111", "222222"}}},
	}
	if diff := cmp.Diff(want, srv.Credentials()); diff != "" {
		t.Errorf("Credentials() mismatch (-want +got):\n%s", diff)
	}
}
