package tasks_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

func seededUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = odintestUserID(i + 1)
	}
	return users
}

func odintestUserID(i int) string {
	s := "0000" + itoa(i)
	return "user" + s[len(s)-4:] + "@example.com"
}

func itoa(i int) string {
	var b []byte
	for i > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
	}
	return string(b)
}

func TestEndToEndEachType(t *testing.T) {
	for _, typ := range []results.CredentialType{results.SIP, results.Voicemail, results.Web} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 30}, ChunkSize: 7})
			users := seededUsers(30)

			env.Submit(tasks.BulkResetPayload{JobID: "job-" + string(typ), Type: typ, Users: users})
			job := env.Wait("job-"+string(typ), 30*time.Second)

			if job.State != results.JobCompleted || job.Applied != 30 || job.Failed != 0 {
				t.Fatalf("job = %s, %d applied, %d failed; want completed, 30 applied", job.State, job.Applied, job.Failed)
			}
			rows := env.Rows(job.ID)
			if len(rows) != 30 {
				t.Fatalf("got %d rows, want 30", len(rows))
			}
			for i, row := range rows {
				value, count, _ := env.Sim.Credential(row.UserID, testenv.SimKind(typ))
				got := row.NewPassword
				if typ == results.Voicemail {
					got = row.NewPasscode
					if row.NewPassword != "" {
						t.Errorf("voicemail row %s has newPassword", row.UserID)
					}
				}
				if row.UserID != users[i] {
					t.Errorf("row %d is %s, want %s (submission order)", i, row.UserID, users[i])
				}
				if got == "" || got != value || count != 1 {
					t.Errorf("user %s: exported value matches simulator %v, set %d times; want a match set once", row.UserID, got == value, count)
				}
			}
			if m := env.Mismatches(job.ID); len(m) > 0 {
				t.Errorf("record differs from simulator:\n%s", strings.Join(m, "\n"))
			}
		})
	}
}

func TestEndToEndFailuresAreRecorded(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{
		Users:                 10,
		WithoutAuthentication: []string{odintestUserID(2)},
		RejectFirst:           []string{odintestUserID(3)},
	}})
	users := append(seededUsers(10), "ghost@example.com")

	env.Submit(tasks.BulkResetPayload{JobID: "failures", Type: results.SIP, Users: users})
	job := env.Wait("failures", 30*time.Second)

	if job.Applied != 9 || job.Failed != 2 {
		t.Fatalf("applied %d, failed %d; want 9 and 2", job.Applied, job.Failed)
	}
	byUser := map[string]results.Row{}
	for _, row := range env.Rows("failures") {
		byUser[row.UserID] = row
	}
	if e := byUser[odintestUserID(2)].Error; !strings.Contains(e, "4410") {
		t.Errorf("user without Authentication: error %q, want the BroadWorks 4410 text", e)
	}
	if e := byUser["ghost@example.com"].Error; e == "" {
		t.Errorf("unknown user: no error in row %+v", byUser["ghost@example.com"])
	}
	rejected := byUser[odintestUserID(3)]
	value, count, _ := env.Sim.Credential(odintestUserID(3), odintest.KindSIP)
	if rejected.NewPassword == "" || rejected.NewPassword != value || count != 1 {
		t.Errorf("rule-rejected user: row value matches simulator %v (set %d times); want the regenerated value applied", rejected.NewPassword == value, count)
	}
	if m := env.Mismatches("failures"); len(m) > 0 {
		t.Errorf("record differs from simulator:\n%s", strings.Join(m, "\n"))
	}
}

func TestEndToEndTransientFaultsRetried(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{
		Sim: odintest.Config{Users: 40, Faults: odintest.Faults{
			Error500: 0.1, Error502HTML: 0.1, Reset: 0.05, ApplyBeforeFault: 0.5, Seed: 7,
		}},
		OdinTimeout: time.Second,
	})
	// Retries wait at least RetryBase: keep the test short by faulting only until every
	// user has had its first attempt.
	env.Submit(tasks.BulkResetPayload{JobID: "faults", Type: results.Web, Users: seededUsers(40)})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && env.Sim.Stats().Requests["PUT /users/passwords"] < 40 {
		time.Sleep(20 * time.Millisecond)
	}
	env.Sim.SetFaults(odintest.Faults{})
	job := env.Wait("faults", 120*time.Second)

	injected := 0
	for _, n := range env.Sim.Stats().Faults {
		injected += n
	}
	if injected == 0 {
		t.Fatal("the simulator injected no fault; the test proves nothing")
	}

	if job.Applied != 40 {
		t.Fatalf("applied %d of 40 (failed %d)", job.Applied, job.Failed)
	}
	if m := env.Mismatches("faults"); len(m) > 0 {
		t.Errorf("record differs from simulator:\n%s", strings.Join(m, "\n"))
	}
}

func TestEndToEndDuplicateSubmission(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 5}})
	p := tasks.BulkResetPayload{JobID: "dup", Type: results.Web, Users: seededUsers(5)}

	first := env.Submit(p)
	second := env.Submit(p)
	env.Wait("dup", 30*time.Second)
	third := env.Submit(p)

	if first.AlreadySubmitted || !second.AlreadySubmitted || !third.AlreadySubmitted {
		t.Errorf("AlreadySubmitted = %v, %v, %v; want false, true, true", first.AlreadySubmitted, second.AlreadySubmitted, third.AlreadySubmitted)
	}
	for _, u := range seededUsers(5) {
		if _, count, _ := env.Sim.Credential(u, odintest.KindWeb); count != 1 {
			t.Errorf("user %s set %d times, want 1", u, count)
		}
	}

	other := p
	other.Type = results.SIP
	_, err := tasks.Submit(context.Background(), env.Client, env.Store, tasks.BulkResetPayload{
		JobID: "dup", Type: results.SIP, ServiceProviderID: env.Sim.ServiceProviderID(), GroupID: env.Sim.GroupID(), Users: p.Users,
	})
	if err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("resubmitting job ID with another type: err = %v, want a conflict", err)
	}
}

func TestEndToEndAllUsers(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{
		Users: 12, ExtraUsers: []string{"a+b@example.com", "Zoë Ünïcode@example.com", "with space@example.com"},
	}})

	env.Submit(tasks.BulkResetPayload{JobID: "all", Type: results.Voicemail, AllUsers: true})
	job := env.Wait("all", 30*time.Second)

	if job.Total != 15 || job.Applied != 15 {
		t.Fatalf("total %d applied %d, want 15 and 15", job.Total, job.Applied)
	}
	var got []string
	for _, row := range env.Rows("all") {
		got = append(got, row.UserID)
	}
	if diff := cmp.Diff(env.Sim.Users(), got); diff != "" {
		t.Errorf("users (-want +got):\n%s", diff)
	}
	if m := env.Mismatches("all"); len(m) > 0 {
		t.Errorf("record differs from simulator:\n%s", strings.Join(m, "\n"))
	}
}

func TestEndToEndEveryKeyHasTTL(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 5}})
	env.Submit(tasks.BulkResetPayload{JobID: "ttl", Type: results.Web, Users: seededUsers(5), ResultTTLSeconds: 3600})
	env.Wait("ttl", 30*time.Second)

	ctx := context.Background()
	keys, err := env.Redis.Client.Keys(ctx, "odinreset:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no odinreset keys found")
	}
	for _, k := range keys {
		ttl, err := env.Redis.Client.TTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 {
			t.Errorf("key %s has TTL %s, want a positive TTL", k, ttl)
		}
	}
}

func TestEndToEndUserNamedLikeInternalTasks(t *testing.T) {
	t.Parallel()
	odd := []string{"complete", "devices", "device/phone-1"}
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{ExtraUsers: odd}})

	env.Submit(tasks.BulkResetPayload{JobID: "odd-names", Type: results.Web, Users: odd})
	job := env.Wait("odd-names", 30*time.Second)

	if job.State != results.JobCompleted || job.Applied != len(odd) {
		t.Fatalf("job %s with %d applied of %d; want completed with every user applied", job.State, job.Applied, len(odd))
	}
	if m := env.Mismatches("odd-names"); len(m) > 0 {
		t.Errorf("record differs from simulator:\n%s", strings.Join(m, "\n"))
	}
}

func TestEndToEndUnknownGroupCancelsJob(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 3}})

	env.Submit(tasks.BulkResetPayload{JobID: "nogroup", Type: results.Web, AllUsers: true, GroupID: "no-such-group"})
	// The fan-out tries three times, 5 and 10 s apart, before it takes the refusal as final.
	job := env.Wait("nogroup", 60*time.Second)

	if job.State != results.JobCancelled {
		t.Errorf("job state %s, want cancelled: a group that cannot be listed must not look like an empty success", job.State)
	}
	if !strings.Contains(job.Reason, "cannot list the group's users") {
		t.Errorf("reason %q, want one saying the group cannot be listed", job.Reason)
	}
}

// TestFanOutFailureSetsJobReason makes every Odin API request fail while the fan-out
// runs. The job's reason must report it, for 'enqueue status', and be cleared once Odin
// responds again and the job completes.
func TestFanOutFailureSetsJobReason(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 5, Faults: odintest.Faults{Error500: 1}}})
	env.Submit(tasks.BulkResetPayload{JobID: "job-trouble", Type: results.Web, Users: seededUsers(5)})

	ctx := t.Context()
	// The first attempt sets the reason within milliseconds; the margin is for a loaded
	// machine running the whole package.
	deadline := time.Now().Add(30 * time.Second)
	var job results.Job
	for {
		var err error
		if job, err = env.Store.Job(ctx, "job-trouble"); err == nil && strings.HasPrefix(job.Reason, "fan-out waits: ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s, reason %q after 30 s of failing Odin calls, want a reason starting with %q", job.State, job.Reason, "fan-out waits: ")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("job reason while Odin fails: %s", job.Reason)
	if !strings.Contains(job.Reason, "500") && !strings.Contains(strings.ToLower(job.Reason), "internal server error") {
		t.Errorf("job reason = %q, want Odin's error in it", job.Reason)
	}

	env.Sim.SetFaults(odintest.Faults{})
	job = env.Wait("job-trouble", 60*time.Second)
	if job.State != results.JobCompleted || job.Applied != 5 {
		t.Fatalf("job = %s with %d applied, want completed with 5", job.State, job.Applied)
	}
	if job.Reason != "" {
		t.Errorf("job reason = %q after the job completed, want it cleared", job.Reason)
	}
}

// TestFanOutWaitReasonClearsWhenOdinResponds fails Odin's SIP generator in the middle of
// a chunk. The generator takes one value per call here, so the chunk's remaining calls
// take seconds: the reason must clear when Odin responds again, not when the chunk ends.
func TestFanOutWaitReasonClearsWhenOdinResponds(t *testing.T) {
	t.Parallel()
	const users = 30
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: users}, RateLimit: 10})
	env.Submit(tasks.BulkResetPayload{JobID: "job-flaky", Type: results.SIP, Users: seededUsers(users)})

	ctx := t.Context()
	waitFor := func(what string, cond func(job results.Job) bool) results.Job {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			job, err := env.Store.Job(ctx, "job-flaky")
			if err == nil && cond(job) {
				return job
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: job %+v, %v", what, job, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the first values", func(results.Job) bool { return env.Sim.Stats().Generated[odintest.KindSIP] >= 3 })
	env.Sim.SetFaults(odintest.Faults{Error500: 1})
	waitFor("the fan-out wait reason", func(job results.Job) bool { return strings.HasPrefix(job.Reason, "fan-out waits: ") })
	env.Sim.SetFaults(odintest.Faults{})

	job := waitFor("the reason to clear", func(job results.Job) bool { return job.Reason == "" })
	if job.Cursor != 0 {
		t.Errorf("reason cleared when the fan-out had enqueued %d users, want 0: it waited for the end of the chunk", job.Cursor)
	}
	if job = env.Wait("job-flaky", 60*time.Second); job.Applied != users {
		t.Errorf("job = %s with %d applied, want %d", job.State, job.Applied, users)
	}
}
