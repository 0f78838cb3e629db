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
// take only the user ID: it must fail before a value is generated for it. The unknown
// user fails at the setter, with Odin's reason.
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
					t.Errorf("%s: the row has a value, want none: Odin never accepted one", user)
				}
				if _, count, _ := env.Sim.Credential(user, testenv.SimKind(typ)); count != 0 {
					t.Errorf("%s: Odin set the credential %d times, want 0", user, count)
				}
			}
			recs, err := env.Store.Users(t.Context(), job.ID, []string{stranger})
			if err != nil || len(recs) != 1 || recs[0].Secret != "" {
				t.Errorf("record of %s: %d records, error %v, want one without a value: none is generated for a user of another group", stranger, len(recs), err)
			}
			if m := env.Mismatches(job.ID); len(m) > 0 {
				t.Errorf("record differs from simulator:\n%s", strings.Join(m, "\n"))
			}
		})
	}
}

// TestCancelStopsGroupLookups cancels a job while its fan-out looks up users of another
// group: the lookups stop, and the record stays as the cancel left it.
func TestCancelStopsGroupLookups(t *testing.T) {
	t.Parallel()
	others := make([]string, 60)
	for i := range others {
		others[i] = "other" + itoa(i+1) + "@example.com"
	}
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 2, OtherGroupUsers: others}, RateLimit: 20})
	env.Submit(tasks.BulkResetPayload{JobID: "cancel-lookups", Type: results.Web, Users: append(seededUsers(2), others...)})

	ctx := t.Context()
	deadline := time.Now().Add(20 * time.Second)
	for {
		job, err := env.Store.Job(ctx, "cancel-lookups")
		if err == nil && job.Failed >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %+v, %v: want 5 users of another group failed", job, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancelled, err := env.Store.Cancel(ctx, "cancel-lookups")
	if err != nil {
		t.Fatal(err)
	}

	// At 20 requests per second, a second would be 20 more lookups.
	lookups := env.Sim.Stats().Requests["GET /users"]
	time.Sleep(time.Second)
	if more := env.Sim.Stats().Requests["GET /users"] - lookups; more > 1 {
		t.Errorf("%d lookups after the cancel, want at most the one under way", more)
	}
	job, err := env.Store.Job(ctx, "cancel-lookups")
	if err != nil {
		t.Fatal(err)
	}
	if job.Failed != cancelled.Failed || job.Cursor != cancelled.Cursor {
		t.Errorf("after the cancel: %d failed, cursor %d; want %d and %d, as the cancel left them", job.Failed, job.Cursor, cancelled.Failed, cancelled.Cursor)
	}
}

// TestRejectedListingLooksUpEachUser submits users for a group Odin does not have. The
// listing is rejected, so the fan-out looks up each user and fails it with its real
// group, before a value is generated.
func TestRejectedListingLooksUpEachUser(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 3}})
	env.Submit(tasks.BulkResetPayload{JobID: "wrong-group", Type: results.SIP, Users: seededUsers(3), GroupID: "no-such-group"})
	job := env.Wait("wrong-group", 30*time.Second)

	if job.State != results.JobCompleted || job.Failed != 3 {
		t.Fatalf("job = %s, %d applied, %d failed; want completed with 3 failed", job.State, job.Applied, job.Failed)
	}
	const want = `user of group "grp1" of service provider "sp1", not of the job's group "no-such-group" of "sp1": not reset`
	for _, row := range env.Rows(job.ID) {
		if !strings.Contains(row.Error, want) {
			t.Errorf("%s: error %q, want it to contain %q", row.UserID, row.Error, want)
		}
	}
	if st := env.Sim.Stats(); st.Generated[odintest.KindSIP] != 0 {
		t.Errorf("Odin generated %d SIP passwords, want none", st.Generated[odintest.KindSIP])
	}
	audit, err := env.Store.AuditFields(t.Context(), job.ID)
	if err != nil || !strings.Contains(audit["group_check"], "each user is looked up") {
		t.Errorf("audit group_check = %q (%v), want the note that each user was looked up", audit["group_check"], err)
	}
}
