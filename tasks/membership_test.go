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

// TestUsersOutsideGroupNotReset submits a user of another group and an unknown user
// with two users of the job's group. Odin's setters would reset the first, because they
// take only the user ID.
func TestUsersOutsideGroupNotReset(t *testing.T) {
	const stranger, ghost = "stranger@example.com", "ghost@example.com"
	for _, typ := range []results.CredentialType{results.SIP, results.Voicemail, results.Web} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 2, OtherGroupUsers: []string{stranger}}})
			users := []string{odintestUserID(1), stranger, ghost, odintestUserID(2)}

			env.Submit(tasks.BulkResetPayload{JobID: "outsiders", Type: typ, Users: users})
			job := env.Wait("outsiders", 30*time.Second)

			if job.State != results.JobCompleted || job.Applied != 2 || job.Failed != 2 {
				t.Fatalf("job = %s, %d applied, %d failed; want completed, 2 applied, 2 failed", job.State, job.Applied, job.Failed)
			}
			rows := map[string]results.Row{}
			for _, row := range env.Rows(job.ID) {
				rows[row.UserID] = row
			}
			want := map[string]string{
				stranger: `user of group "grp2" of service provider "sp1", not of the job's group "grp1" of "sp1": not reset`,
				ghost:    "User not found",
			}
			for user, reason := range want {
				row := rows[user]
				if !strings.Contains(row.Error, reason) {
					t.Errorf("%s: error %q, want it to contain %q", user, row.Error, reason)
				}
				if row.NewPassword != "" || row.NewPasscode != "" {
					t.Errorf("%s: the row has a value, want none: nothing was generated for it", user)
				}
				if _, count, _ := env.Sim.Credential(user, testenv.SimKind(typ)); count != 0 {
					t.Errorf("%s: Odin set the credential %d times, want 0", user, count)
				}
			}
			if m := env.Mismatches(job.ID); len(m) > 0 {
				t.Errorf("record differs from simulator:\n%s", strings.Join(m, "\n"))
			}
		})
	}
}
