package odintest_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/odin/odintest"
)

type userSummary struct {
	UserID            string `json:"userId"`
	ServiceProviderID string `json:"serviceProviderId"`
	GroupID           string `json:"groupId"`
	FirstName         string `json:"firstName"`
	LastName          string `json:"lastName"`
	PhoneNumber       string `json:"phoneNumber"`
	Extension         string `json:"extension"`
}

type accessDevice struct {
	DeviceName  string `json:"deviceName"`
	DeviceLevel string `json:"deviceLevel"`
	DeviceType  string `json:"deviceType"`
}

type userDetails struct {
	UserID               string `json:"userId"`
	ServiceProviderID    string `json:"serviceProviderId"`
	GroupID              string `json:"groupId"`
	AccessDeviceEndpoint *struct {
		AccessDevice accessDevice `json:"accessDevice"`
	} `json:"accessDeviceEndpoint"`
}

var deviceLayoutConfig = odintest.Config{
	Users:             5,
	ServiceProviderID: "ent1",
	GroupID:           "grpA",
	Devices: odintest.DeviceLayout{
		NoDevice:             []string{"user0002@example.com"},
		ServiceProviderLevel: []string{"user0003@example.com"},
		Shared:               map[string][]string{"lobby-phone": {"user0004@example.com", "user0005@example.com"}},
	},
}

func TestListUsers(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Users: 2, ExtraUsers: []string{"a b@example.com"}, ServiceProviderID: "ent1", GroupID: "grpA"})
	token := login(t, srv)
	all := []userSummary{
		{UserID: "user0001@example.com", ServiceProviderID: "ent1", GroupID: "grpA", FirstName: "User", LastName: "0001", PhoneNumber: "5135000001", Extension: "0001"},
		{UserID: "user0002@example.com", ServiceProviderID: "ent1", GroupID: "grpA", FirstName: "User", LastName: "0002", PhoneNumber: "5135000002", Extension: "0002"},
		{UserID: "a b@example.com", ServiceProviderID: "ent1", GroupID: "grpA", FirstName: "Extra", LastName: "1", PhoneNumber: "5135000003", Extension: "0003"},
	}

	tests := []struct {
		name       string
		query      string
		wantStatus int
		want       []userSummary
		wantError  string
	}{
		{"group", query("serviceProviderId", "ent1", "groupId", "grpA"), 200, all, ""},
		{"service provider", query("serviceProviderId", "ent1"), 200, all, ""},
		{"limit", query("serviceProviderId", "ent1", "groupId", "grpA", "limit", "2"), 200, all[:2], ""},
		{"wrong service provider", query("serviceProviderId", "sp1", "groupId", "grpA"), 404, nil, "Service provider not found: sp1"},
		{"wrong group", query("serviceProviderId", "ent1", "groupId", "grp1"), 404, nil, "Group not found: grp1"},
		{"no service provider", "", 400, nil, "serviceProviderId"},
		{"bad limit", query("serviceProviderId", "ent1", "limit", "-1"), 400, nil, "Invalid limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := call(t, http.MethodGet, srv.URL, "/users"+tt.query, token, nil)
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", resp.status, tt.wantStatus, resp.body)
			}
			if tt.wantStatus != http.StatusOK {
				if e := resp.apiError(t); !strings.Contains(e.Error, tt.wantError) {
					t.Errorf("error = %q, want it to contain %q", e.Error, tt.wantError)
				}
				return
			}
			var got []userSummary
			resp.decode(t, &got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("users mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUserDetails(t *testing.T) {
	t.Parallel()
	srv := startServer(t, deviceLayoutConfig)
	token := login(t, srv)
	group := func(name string) *accessDevice {
		return &accessDevice{DeviceName: name, DeviceLevel: "Group", DeviceType: "Polycom VVX 450"}
	}
	tests := []struct {
		name       string
		userID     string
		wantStatus int
		wantDevice *accessDevice
		wantError  string
	}{
		{"own group device", "user0001@example.com", 200, group("user0001-phone"), ""},
		{"no device", "user0002@example.com", 200, nil, ""},
		{"service provider device", "user0003@example.com", 200, &accessDevice{DeviceName: "user0003-phone", DeviceLevel: "Service Provider", DeviceType: "Polycom VVX 450"}, ""},
		{"shared device", "user0005@example.com", 200, group("lobby-phone"), ""},
		{"unknown user", "ghost@example.com", 404, nil, "[Error 4008] User not found: ghost@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := call(t, http.MethodGet, srv.URL, "/users"+query("userId", tt.userID), token, nil)
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", resp.status, tt.wantStatus, resp.body)
			}
			if tt.wantStatus != http.StatusOK {
				if e := resp.apiError(t); e.Error != tt.wantError || e.Status != tt.wantStatus {
					t.Errorf("error body = %+v, want %q with status %d", e, tt.wantError, tt.wantStatus)
				}
				return
			}

			var got userDetails
			resp.decode(t, &got)
			if got.UserID != tt.userID || got.ServiceProviderID != "ent1" || got.GroupID != "grpA" {
				t.Errorf("user = %s in %s/%s, want %s in ent1/grpA", got.UserID, got.ServiceProviderID, got.GroupID, tt.userID)
			}
			var gotDevice *accessDevice
			if got.AccessDeviceEndpoint != nil {
				gotDevice = &got.AccessDeviceEndpoint.AccessDevice
			}
			if diff := cmp.Diff(tt.wantDevice, gotDevice); diff != "" {
				t.Errorf("device mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeviceOps(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	cfg := deviceLayoutConfig
	cfg.Now = clock.Now
	srv := startServer(t, cfg)
	token := login(t, srv)
	body := func(name string) map[string]string {
		return map[string]string{"serviceProviderId": "ent1", "groupId": "grpA", "deviceName": name}
	}

	tests := []struct {
		name       string
		path       string
		body       map[string]string
		wantStatus int
		wantError  string
	}{
		{"rebuild own device", "/groups/devices/rebuild", body("user0001-phone"), 200, ""},
		{"reset own device", "/groups/devices/reset", body("user0001-phone"), 200, ""},
		{"rebuild shared device", "/groups/devices/rebuild", body("lobby-phone"), 200, ""},
		{"rebuild service provider device", "/groups/devices/rebuild", body("user0003-phone"), 400, "not a group-level device"},
		{"reset service provider device", "/groups/devices/reset", body("user0003-phone"), 400, "not a group-level device"},
		{"unknown device", "/groups/devices/rebuild", body("user0002-phone"), 404, "Access device not found: user0002-phone"},
		{"missing device name", "/groups/devices/rebuild", body(""), 400, "deviceName"},
		{"wrong group", "/groups/devices/reset", map[string]string{"serviceProviderId": "ent1", "groupId": "grpB", "deviceName": "user0001-phone"}, 404, "Group not found: grpB"},
		{"wrong service provider", "/groups/devices/reset", map[string]string{"serviceProviderId": "sp1", "groupId": "grpA", "deviceName": "user0001-phone"}, 404, "Service provider not found: sp1"},
		{"missing group", "/groups/devices/reset", map[string]string{"serviceProviderId": "ent1", "deviceName": "user0001-phone"}, 400, "groupId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := call(t, http.MethodPost, srv.URL, tt.path, token, tt.body)
			clock.Advance(time.Second)
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
	for _, name := range []string{"user0001-phone", "lobby-phone", "user0003-phone", "nothing"} {
		rebuilt, reset := srv.DeviceOps(name)
		counts[name] = [2]int{rebuilt, reset}
	}
	wantCounts := map[string][2]int{"user0001-phone": {1, 1}, "lobby-phone": {1, 0}, "user0003-phone": {0, 0}, "nothing": {0, 0}}
	if diff := cmp.Diff(wantCounts, counts); diff != "" {
		t.Errorf("DeviceOps mismatch (-want +got):\n%s", diff)
	}

	start := newFakeClock().Now()
	wantEvents := []odintest.DeviceEvent{
		{Device: "user0001-phone", Op: "rebuild", At: start, SIPPasswordSets: map[string]int{"user0001@example.com": 0}},
		{Device: "user0001-phone", Op: "reset", At: start.Add(time.Second), SIPPasswordSets: map[string]int{"user0001@example.com": 0}},
		{Device: "lobby-phone", Op: "rebuild", At: start.Add(2 * time.Second), SIPPasswordSets: map[string]int{"user0004@example.com": 0, "user0005@example.com": 0}},
	}
	if diff := cmp.Diff(wantEvents, srv.DeviceEvents()); diff != "" {
		t.Errorf("DeviceEvents mismatch (-want +got):\n%s", diff)
	}

	device, ok := srv.UserDevice("user0004@example.com")
	wantDevice := odintest.Device{Name: "lobby-phone", Level: "Group", Type: "Polycom VVX 450", Users: []string{"user0004@example.com", "user0005@example.com"}}
	if diff := cmp.Diff(wantDevice, device); diff != "" || !ok {
		t.Errorf("UserDevice mismatch (ok %v, -want +got):\n%s", ok, diff)
	}
}

func TestOddUserIDs(t *testing.T) {
	t.Parallel()
	oddIDs := []string{
		"o'brien+test@example.com",
		"a b@example.com",
		"zoë&co=1?x#y/%41@example.org",
		"名前@例え.jp",
		"no-at-sign",
	}
	srv := startServer(t, odintest.Config{ExtraUsers: oddIDs})
	token := login(t, srv)

	for _, userID := range oddIDs {
		t.Run(userID, func(t *testing.T) {
			resp := call(t, http.MethodGet, srv.URL, "/users/authentication?userId="+url.QueryEscape(userID), token, nil)
			var auth struct {
				UserID   string `json:"userId"`
				UserName string `json:"userName"`
			}
			resp.decode(t, &auth)
			wantName, _, _ := strings.Cut(userID, "@")
			if auth.UserID != userID || auth.UserName != wantName {
				t.Fatalf("GET /users/authentication = %+v, want userId %q and userName %q", auth, userID, wantName)
			}

			put := map[string]string{"userId": userID, "userName": auth.UserName, "newPassword": goodSIPPassword}
			if resp := call(t, http.MethodPut, srv.URL, "/users/authentication", token, put); resp.status != http.StatusOK {
				t.Fatalf("PUT /users/authentication: status = %d, body %s", resp.status, resp.body)
			}
			if value, _, _ := srv.Credential(userID, odintest.KindSIP); value != goodSIPPassword {
				t.Errorf("stored SIP password = %q, want %q", value, goodSIPPassword)
			}

			resp = call(t, http.MethodGet, srv.URL, "/users"+query("userId", userID), token, nil)
			var details userDetails
			resp.decode(t, &details)
			if details.UserID != userID {
				t.Errorf("GET /users?userId: userId = %q, want %q", details.UserID, userID)
			}
		})
	}

	t.Run("plus sign left unescaped", func(t *testing.T) {
		// A "+" in a query string means a space, so a client that does not escape it
		// requests another user.
		resp := call(t, http.MethodGet, srv.URL, "/users/authentication?userId=o'brien+test@example.com", token, nil)
		if e := resp.apiError(t); resp.status != http.StatusNotFound || e.Error != "[Error 4008] User not found: o'brien test@example.com" {
			t.Errorf("status %d, error %q, want 404 for user \"o'brien test@example.com\"", resp.status, e.Error)
		}
	})
}

func TestOtherGroupUsers(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Users: 1, ServiceProviderID: "ent1", GroupID: "grpA", OtherGroupUsers: []string{"stranger@example.com"}})
	token := login(t, srv)

	resp := call(t, http.MethodGet, srv.URL, "/users"+query("serviceProviderId", "ent1", "groupId", "grpA"), token, nil)
	var listed []userSummary
	resp.decode(t, &listed)
	if len(listed) != 1 || listed[0].UserID != "user0001@example.com" {
		t.Errorf("group list = %+v, want only user0001@example.com", listed)
	}

	resp = call(t, http.MethodGet, srv.URL, "/users"+query("userId", "stranger@example.com"), token, nil)
	var details userDetails
	resp.decode(t, &details)
	if details.ServiceProviderID != "ent1" || details.GroupID != "grp2" || details.AccessDeviceEndpoint != nil {
		t.Errorf("details = %+v, want ent1/grp2 without a device", details)
	}

	// Odin's setters take only the user ID, so they reset a user of any group.
	resp = call(t, http.MethodPut, srv.URL, "/users/passwords", token, map[string]string{"userId": "stranger@example.com", "newPassword": "Xy7#kLm2pQr9vW4z"})
	if resp.status != http.StatusOK {
		t.Fatalf("PUT /users/passwords status = %d, want 200 (body %s)", resp.status, resp.body)
	}
	if value, count, _ := srv.Credential("stranger@example.com", odintest.KindWeb); value != "Xy7#kLm2pQr9vW4z" || count != 1 {
		t.Errorf("Credential = %q set %d times, want the value set once", value, count)
	}
	if _, ok := srv.Credentials()["stranger@example.com"]; !ok {
		t.Error("Credentials leaves out the user of the other group")
	}
}
