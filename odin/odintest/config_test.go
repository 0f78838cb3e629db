package odintest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/odin/odintest"
)

func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     odintest.Config
		wantErr string
	}{
		{"negative users", odintest.Config{Users: -1}, "Users is -1"},
		{"short web password", odintest.Config{PasswordMinLength: 4}, "PasswordMinLength is 4"},
		{"long SIP password", odintest.Config{SIPPasswordLength: 61}, "SIPPasswordLength is 61"},
		{"passcode range inverted", odintest.Config{PasscodeMinLength: 8, PasscodeMaxLength: 6}, "PasscodeMaxLength is 6"},
		{"passcode too short", odintest.Config{PasscodeMinLength: 1}, "PasscodeMinLength is 1"},
		{"negative token lifetime", odintest.Config{TokenLifetime: -time.Second}, "TokenLifetime"},
		{"negative latency", odintest.Config{Latency: -time.Millisecond}, "latency"},
		{"negative rate limit", odintest.Config{RateLimit: -1}, "RateLimit is -1"},
		{"fault above 1", odintest.Config{Faults: odintest.Faults{Error500: 1.5}}, "Faults.Error500"},
		{"faults add up above 1", odintest.Config{Faults: odintest.Faults{Error500: 0.6, Reset: 0.6}}, "add up to"},
		{"duplicate extra user", odintest.Config{Users: 1, ExtraUsers: []string{"user0001@example.com"}}, "appears twice"},
		{"empty extra user", odintest.Config{ExtraUsers: []string{""}}, "empty user ID"},
		{"other group is the group", odintest.Config{GroupID: "g", OtherGroupID: "g"}, "OtherGroupID"},
		{"empty other-group user", odintest.Config{OtherGroupUsers: []string{""}}, "OtherGroupUsers contains an empty user ID"},
		{"control character", odintest.Config{ExtraUsers: []string{"a\nb@example.com"}}, "control character"},
		{"unknown user without service", odintest.Config{Users: 1, WithoutAuthentication: []string{"ghost@example.com"}}, "WithoutAuthentication"},
		{"unknown reject-first user", odintest.Config{Users: 1, RejectFirst: []string{"ghost@example.com"}}, "RejectFirst"},
		{"unknown device user", odintest.Config{Users: 1, Devices: odintest.DeviceLayout{NoDevice: []string{"ghost@example.com"}}}, "Devices.NoDevice"},
		{"user on two devices", odintest.Config{Users: 2, Devices: odintest.DeviceLayout{
			NoDevice: []string{"user0001@example.com"},
			Shared:   map[string][]string{"lobby": {"user0001@example.com"}},
		}}, "listed in both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := odintest.New(tt.cfg)
			if err == nil {
				t.Fatalf("New: got nil error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New: error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestUsersInGroupOrder(t *testing.T) {
	t.Parallel()
	sim, err := odintest.New(odintest.Config{Users: 3, ExtraUsers: []string{"a b@example.com", "zoë+x@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"user0001@example.com", "user0002@example.com", "user0003@example.com", "a b@example.com", "zoë+x@example.org"}
	if diff := cmp.Diff(want, sim.Users()); diff != "" {
		t.Errorf("Users() mismatch (-want +got):\n%s", diff)
	}
}

func TestUsersPastFourDigits(t *testing.T) {
	t.Parallel()
	sim, err := odintest.New(odintest.Config{Users: 10001})
	if err != nil {
		t.Fatal(err)
	}
	users := sim.Users()
	if got, want := users[9998], "user9999@example.com"; got != want {
		t.Errorf("user 9999 is %q, want %q", got, want)
	}
	if got, want := users[10000], "user10001@example.com"; got != want {
		t.Errorf("user 10001 is %q, want %q", got, want)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	sim, err := odintest.New(odintest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	username, password := sim.Login()
	got := []string{sim.ServiceProviderID(), sim.GroupID(), username, password}
	want := []string{"sp1", "grp1", "admin", "odin-sim-password"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults mismatch (-want +got):\n%s", diff)
	}
}
