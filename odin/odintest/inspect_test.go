package odintest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/odin/odintest"
)

func TestInspectionEndpoints(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{
		Users: 2,
		Devices: odintest.DeviceLayout{
			NoDevice:             []string{"user0002@example.com"},
			ServiceProviderLevel: nil,
		},
	})
	token := login(t, srv)
	call(t, http.MethodPut, srv.URL, "/users/portal-passcode", token, map[string]string{"userId": "user0001@example.com", "newPasscode": "0123456"})
	call(t, http.MethodPost, srv.URL, "/groups/devices/rebuild", token, map[string]string{"serviceProviderId": "sp1", "groupId": "grp1", "deviceName": "user0001-phone"})

	t.Run("credentials", func(t *testing.T) {
		var got map[string]map[odintest.Kind]odintest.Credential
		call(t, http.MethodGet, srv.Root(), "/_sim/credentials", "", nil).decode(t, &got)
		want := map[string]map[odintest.Kind]odintest.Credential{
			"user0001@example.com": {odintest.KindVoicemail: {Value: "0123456", SetCount: 1, History: []string{"0123456"}}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("credentials mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("index", func(t *testing.T) {
		for _, path := range []string{"/_sim", "/_sim/"} {
			resp := call(t, http.MethodGet, srv.Root(), path, "", nil)
			if resp.status != http.StatusOK || !strings.Contains(string(resp.body), "GET  /_sim/credentials") {
				t.Errorf("GET %s = %d %.100q, want 200 with the list of endpoints", path, resp.status, resp.body)
			}
		}
	})

	t.Run("stats", func(t *testing.T) {
		var got odintest.Stats
		call(t, http.MethodGet, srv.Root(), "/_sim/stats", "", nil).decode(t, &got)
		if diff := cmp.Diff(srv.Stats(), got); diff != "" {
			t.Errorf("stats mismatch (-want +got):\n%s", diff)
		}
		if got.Requests["PUT /users/portal-passcode"] != 1 || got.Statuses["POST /groups/devices/rebuild"][200] != 1 {
			t.Errorf("stats %+v lack the passcode PUT or the rebuild", got)
		}
	})

	t.Run("devices", func(t *testing.T) {
		var got odintest.DeviceReport
		call(t, http.MethodGet, srv.Root(), "/_sim/devices", "", nil).decode(t, &got)
		wantDevices := []odintest.DeviceState{{
			Device:  odintest.Device{Name: "user0001-phone", Level: "Group", Type: "Polycom VVX 450", Users: []string{"user0001@example.com"}},
			Rebuilt: 1,
		}}
		if diff := cmp.Diff(wantDevices, got.Devices); diff != "" {
			t.Errorf("devices mismatch (-want +got):\n%s", diff)
		}
		if len(got.Events) != 1 || got.Events[0].Op != "rebuild" {
			t.Errorf("events = %+v, want one rebuild", got.Events)
		}
	})

	t.Run("users", func(t *testing.T) {
		var got []string
		call(t, http.MethodGet, srv.Root(), "/_sim/users", "", nil).decode(t, &got)
		if diff := cmp.Diff(srv.Users(), got); diff != "" {
			t.Errorf("users mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("unknown", func(t *testing.T) {
		if resp := call(t, http.MethodGet, srv.Root(), "/_sim/nothing", "", nil); resp.status != http.StatusNotFound {
			t.Errorf("status = %d, want 404", resp.status)
		}
		if resp := call(t, http.MethodGet, srv.Root(), "/", "", nil); resp.status != http.StatusNotFound {
			t.Errorf("root: status = %d, want 404", resp.status)
		}
	})
}

func TestInspectionControls(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{})
	token := login(t, srv)

	tests := []struct {
		name       string
		method     string
		path       string
		body       any
		wantStatus int
		// then is the status of GET /api/v2/users with the token afterwards.
		then int
	}{
		{"set faults", "PUT", "/_sim/faults", map[string]any{"error500": 1, "hangDuration": "1s"}, 200, 500},
		{"reject bad faults", "PUT", "/_sim/faults", map[string]any{"error500": 2}, 400, 500},
		{"reject bad duration", "PUT", "/_sim/faults", map[string]any{"hang": 0.5, "hangDuration": "soon"}, 400, 500},
		{"reject misspelt fault", "PUT", "/_sim/faults", map[string]any{"error_500": 1}, 400, 500},
		{"clear faults", "PUT", "/_sim/faults", map[string]any{}, 200, 400},
		{"rate limit", "PUT", "/_sim/rate-limit", map[string]any{"requestsPerSecond": 0.01}, 200, 400}, // the one request per 100s
		{"reject negative rate", "PUT", "/_sim/rate-limit", map[string]any{"requestsPerSecond": -1}, 400, 429},
		{"reject missing rate", "PUT", "/_sim/rate-limit", map[string]any{}, 400, 429},
		{"reject unknown rate field", "PUT", "/_sim/rate-limit", map[string]any{"requestsPerSecond": 0, "burst": 2}, 400, 429},
		{"no rate limit", "PUT", "/_sim/rate-limit", map[string]any{"requestsPerSecond": 0}, 200, 400},
		{"expire tokens", "POST", "/_sim/expire-tokens", nil, 204, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if resp := call(t, tt.method, srv.Root(), tt.path, "", tt.body); resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", resp.status, tt.wantStatus, resp.body)
			}
			// GET /users without parameters is a 400 when nothing else intervenes.
			if resp := call(t, http.MethodGet, srv.URL, "/users", token, nil); resp.status != tt.then {
				t.Errorf("then GET /users: status = %d, want %d", resp.status, tt.then)
			}
		})
	}

	resp := call(t, http.MethodPut, srv.Root(), "/_sim/faults", "", map[string]any{"error_500": 1})
	const want = `Unknown field \"error_500\": the fields are error500, error502HTML, reset, hang, hangDuration, includeAuth, applyBeforeFault, seed`
	if !strings.Contains(string(resp.body), want) {
		t.Errorf("misspelt fault: body %s, want it to contain %s", resp.body, want)
	}

	if resp := call(t, http.MethodPost, srv.Root(), "/_sim/reset-stats", "", nil); resp.status != http.StatusNoContent {
		t.Errorf("reset-stats: status = %d, want 204", resp.status)
	}
	if got := srv.Stats().Total; got != 0 {
		t.Errorf("Stats().Total after reset = %d, want 0", got)
	}
}

func TestServeHTTPWithoutListener(t *testing.T) {
	t.Parallel()
	sim, err := odintest.New(odintest.Config{Users: 1, Faults: odintest.Faults{Hang: 1, HangDuration: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(sim)
	defer ts.Close()

	resp := call(t, http.MethodGet, ts.URL+"/api/v2", "/users", "", nil)
	if resp.status != http.StatusGatewayTimeout {
		t.Errorf("status = %d, want 504", resp.status)
	}
}

func TestInspectionAdminLogin(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{})
	user, oldPassword := srv.Login()
	loginStatus := func(password string) int {
		t.Helper()
		return call(t, http.MethodPost, srv.URL, "/auth/token", "", map[string]string{"username": user, "password": password}).status
	}

	if resp := call(t, http.MethodPut, srv.Root(), "/_sim/admin", "", map[string]any{"password": "changed-at-2am"}); resp.status != http.StatusNoContent {
		t.Fatalf("PUT /_sim/admin: status %d, body %s", resp.status, resp.body)
	}
	if got := loginStatus(oldPassword); got != http.StatusUnauthorized {
		t.Errorf("login with the old password: %d, want 401", got)
	}
	if got := loginStatus("changed-at-2am"); got != http.StatusOK {
		t.Errorf("login with the new password: %d, want 200", got)
	}

	call(t, http.MethodPut, srv.Root(), "/_sim/admin", "", map[string]any{"passwordChangeRequired": true})
	if got := loginStatus("changed-at-2am"); got != http.StatusPaymentRequired {
		t.Errorf("login while a password change is required: %d, want 402", got)
	}

	for _, body := range []map[string]any{{"password": ""}, {"pasword": "typo"}} {
		if resp := call(t, http.MethodPut, srv.Root(), "/_sim/admin", "", body); resp.status != http.StatusBadRequest {
			t.Errorf("PUT /_sim/admin %v: status %d, want 400", body, resp.status)
		}
	}
}
