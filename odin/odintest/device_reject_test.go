package odintest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/odin/odintest"
)

func TestDeviceRejections(t *testing.T) {
	t.Parallel()
	cfg := odintest.Config{
		Users: 3,
		Devices: odintest.DeviceLayout{
			RejectRebuild: []string{"user0001-phone"},
			RejectReset:   []string{"user0002-phone"},
		},
	}
	srv := startServer(t, cfg)
	token := login(t, srv)
	body := func(name string) map[string]string {
		return map[string]string{"serviceProviderId": "sp1", "groupId": "grp1", "deviceName": name}
	}

	tests := []struct {
		name       string
		path       string
		device     string
		wantStatus int
		wantError  string
	}{
		{"rejected rebuild", "/groups/devices/rebuild", "user0001-phone", 400, "cannot be rebuilt"},
		{"reset of rebuild-rejected device", "/groups/devices/reset", "user0001-phone", 200, ""},
		{"rebuild of reset-rejected device", "/groups/devices/rebuild", "user0002-phone", 200, ""},
		{"rejected reset", "/groups/devices/reset", "user0002-phone", 400, "cannot be reset"},
		{"device without rejection", "/groups/devices/rebuild", "user0003-phone", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := call(t, http.MethodPost, srv.URL, tt.path, token, body(tt.device))
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", resp.status, tt.wantStatus, resp.body)
			}
			if tt.wantError != "" {
				if e := resp.apiError(t); !strings.Contains(e.Error, tt.wantError) {
					t.Errorf("error = %q, want it to contain %q", e.Error, tt.wantError)
				}
			}
		})
	}

	counts := map[string][2]int{}
	for _, name := range []string{"user0001-phone", "user0002-phone", "user0003-phone"} {
		rebuilt, reset := srv.DeviceOps(name)
		counts[name] = [2]int{rebuilt, reset}
	}
	want := map[string][2]int{"user0001-phone": {0, 1}, "user0002-phone": {1, 0}, "user0003-phone": {1, 0}}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("DeviceOps mismatch, rejected calls must not count (-want +got):\n%s", diff)
	}
}

func TestDeviceRejectionsNeedGroupDevices(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		layout  odintest.DeviceLayout
		wantErr string
	}{
		{"unknown device", odintest.DeviceLayout{RejectRebuild: []string{"ghost-phone"}}, `Devices.RejectRebuild: "ghost-phone"`},
		{"service provider device", odintest.DeviceLayout{
			ServiceProviderLevel: []string{"user0001@example.com"},
			RejectReset:          []string{"user0001-phone"},
		}, `Devices.RejectReset: "user0001-phone"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := odintest.New(odintest.Config{Users: 1, Devices: tt.layout})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New() error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDeviceEventSIPPasswordSets(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Users: 2, Devices: odintest.DeviceLayout{
		Shared: map[string][]string{"lobby-phone": {"user0001@example.com", "user0002@example.com"}},
	}})
	token := login(t, srv)

	put := map[string]string{"userId": "user0001@example.com", "userName": "user0001", "newPassword": "Kx8#qLm2vRt9"}
	if resp := call(t, http.MethodPut, srv.URL, "/users/authentication", token, put); resp.status != http.StatusOK {
		t.Fatalf("set SIP password: status %d (body %s)", resp.status, resp.body)
	}
	rebuild := map[string]string{"serviceProviderId": "sp1", "groupId": "grp1", "deviceName": "lobby-phone"}
	if resp := call(t, http.MethodPost, srv.URL, "/groups/devices/rebuild", token, rebuild); resp.status != http.StatusOK {
		t.Fatalf("rebuild: status %d (body %s)", resp.status, resp.body)
	}

	events := srv.DeviceEvents()
	if len(events) != 1 {
		t.Fatalf("got %d device events, want 1", len(events))
	}
	want := map[string]int{"user0001@example.com": 1, "user0002@example.com": 0}
	if diff := cmp.Diff(want, events[0].SIPPasswordSets); diff != "" {
		t.Errorf("SIPPasswordSets mismatch (-want +got):\n%s", diff)
	}
}
