package tasks_test

import (
	"strings"
	"testing"
	"time"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

func TestDryRunChangesNothing(t *testing.T) {
	for _, typ := range []results.CredentialType{results.SIP, results.Voicemail, results.Web} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			env := testenv.Start(t, testenv.Options{Sim: odintest.Config{
				Users:                 6,
				WithoutAuthentication: []string{odintestUserID(2)},
				WithoutVoiceMessaging: []string{odintestUserID(3)},
			}})
			users := append(seededUsers(6), "ghost@example.com")

			env.Submit(tasks.BulkResetPayload{JobID: "dry", Type: typ, Users: users, DryRun: true})
			job := env.Wait("dry", 30*time.Second)

			wantFailed := map[results.CredentialType][]string{
				results.SIP:       {odintestUserID(2), "ghost@example.com"},
				results.Voicemail: {odintestUserID(3), "ghost@example.com"},
				results.Web:       {"ghost@example.com"},
			}[typ]
			if job.Failed != len(wantFailed) || job.Applied != len(users)-len(wantFailed) {
				t.Errorf("checks passed %d, failed %d; want %d and %d", job.Applied, job.Failed, len(users)-len(wantFailed), len(wantFailed))
			}
			rows := env.Rows("dry")
			for _, row := range rows {
				if row.NewPassword != "" || row.NewPasscode != "" {
					t.Errorf("dry-run row %s carries a value", row.UserID)
				}
				failing := false
				for _, u := range wantFailed {
					failing = failing || u == row.UserID
				}
				if failing && row.Error == "" {
					t.Errorf("user %s: no error, want the failed check's reason", row.UserID)
				}
				if !failing && row.Check != "ok" {
					t.Errorf("user %s: check %q error %q, want ok", row.UserID, row.Check, row.Error)
				}
			}
			stats := env.Sim.Stats()
			for endpoint, n := range stats.Requests {
				if strings.HasPrefix(endpoint, "PUT /users") || strings.Contains(endpoint, "generate") {
					t.Errorf("dry run sent %d requests to %s", n, endpoint)
				}
			}
		})
	}
}

func TestDryRunChecksDevices(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{
		Users: 4,
		Devices: odintest.DeviceLayout{
			NoDevice:             []string{odintestUserID(1)},
			ServiceProviderLevel: []string{odintestUserID(2)},
		},
	}})

	env.Submit(tasks.BulkResetPayload{JobID: "dry-dev", Type: results.SIP, Users: seededUsers(4), DryRun: true, Devices: results.DevicesReset})
	job := env.Wait("dry-dev", 30*time.Second)

	if job.Applied != 2 || job.Failed != 2 {
		t.Fatalf("checks passed %d, failed %d; want 2 and 2", job.Applied, job.Failed)
	}
	for _, row := range env.Rows("dry-dev") {
		switch row.UserID {
		case odintestUserID(1):
			if !strings.Contains(row.Error, "no device") {
				t.Errorf("user without device: error %q", row.Error)
			}
		case odintestUserID(2):
			if !strings.Contains(row.Error, "group-level") {
				t.Errorf("user with a service-provider device: error %q", row.Error)
			}
		}
	}
}
