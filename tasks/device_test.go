package tasks_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

const (
	rebuildPath = "POST /groups/devices/rebuild"
	resetPath   = "POST /groups/devices/reset"
	lookupPath  = "GET /users"
	// groupListings is the fan-out's GET /users of the group's list, which checks that
	// the job's users belong to the group. It shares lookupPath with the device lookups.
	groupListings = 1
)

// deviceSim is a group of 14 users whose phones cover every case of the device step.
// There are own phones, shared phones, a phone shared with a user outside the job, a
// phone of failed users only, no phone, a service-provider-level phone, and phones whose
// rebuild or reset Odin rejects.
func deviceSim() odintest.Config {
	u := odintestUserID
	return odintest.Config{
		Users:                    14,
		SIPGeneratorAcceptsLimit: true,
		WithoutAuthentication:    []string{u(9), u(10), u(11)},
		Devices: odintest.DeviceLayout{
			NoDevice:             []string{u(3)},
			ServiceProviderLevel: []string{u(4)},
			Shared: map[string][]string{
				"half-phone":  {u(1), u(12)},
				"lobby-phone": {u(5), u(6)},
				"desk-trio":   {u(7), u(8), u(9)},
				"dead-phone":  {u(10), u(11)},
			},
			RejectRebuild: []string{"user0013-phone"},
			RejectReset:   []string{"user0014-phone"},
		},
	}
}

// deviceJobUsers are the users submitted with deviceSim: all but user 12, which shares
// half-phone with user 1 from outside the job.
func deviceJobUsers() []string {
	return slices.DeleteFunc(seededUsers(14), func(u string) bool { return u == odintestUserID(12) })
}

func TestDeviceStepEndToEnd(t *testing.T) {
	u := odintestUserID
	const (
		noDevice   = "skipped: the user has no device"
		spDevice   = `skipped: device "user0004-phone" is at Service Provider level; Odin rebuilds and resets group-level devices only`
		badRebuild = "failed: rebuild: Odin: Device user0013-phone cannot be rebuilt: the simulator is configured to reject it"
		badReset   = "failed: reset: Odin: Device user0014-phone cannot be reset: the simulator is configured to reject it (the configuration was rebuilt)"
	)
	tests := []struct {
		mode        results.DeviceMode
		done        string // outcome of a device whose calls succeed
		resetDevice string // outcome of user0014-phone, whose reset Odin rejects
		wantResets  int    // POST /groups/devices/reset requests
	}{
		{results.DevicesRebuild, results.DeviceRebuilt, results.DeviceRebuilt, 0},
		{results.DevicesReset, results.DeviceReset, badReset, 5},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			t.Parallel()
			env := testenv.Start(t, testenv.Options{Sim: deviceSim(), ChunkSize: 5})
			jobID := "devices-" + string(tt.mode)

			env.Submit(tasks.BulkResetPayload{JobID: jobID, Type: results.SIP, Users: deviceJobUsers(), Devices: tt.mode})
			job := env.Wait(jobID, 60*time.Second)

			if job.State != results.JobCompleted || job.Applied != 10 || job.Failed != 3 {
				t.Fatalf("job %s with %d applied, %d failed; want completed with 10 applied, 3 failed", job.State, job.Applied, job.Failed)
			}
			if job.DeviceTotal != 6 || job.DeviceDone != 6 {
				t.Errorf("DeviceTotal %d, DeviceDone %d; want 6 and 6", job.DeviceTotal, job.DeviceDone)
			}

			wantDevice := map[string]string{
				u(1): tt.done, u(2): tt.done, u(3): noDevice, u(4): spDevice, u(5): tt.done, u(6): tt.done,
				u(7): tt.done, u(8): tt.done, u(9): "", u(10): "", u(11): "", u(13): badRebuild, u(14): tt.resetDevice,
			}
			gotDevice := map[string]string{}
			for _, row := range env.Rows(jobID) {
				gotDevice[row.UserID] = row.Device
				if (row.Error == "") != (row.NewPassword != "") {
					t.Errorf("row %s: password %q next to error %q, want exactly one of them", row.UserID, row.NewPassword, row.Error)
				}
			}
			if diff := cmp.Diff(wantDevice, gotDevice); diff != "" {
				t.Errorf("device outcome per user (-want +got):\n%s", diff)
			}

			wantOps := map[string][2]int{
				"half-phone": {1, tt.wantResets / 5}, "user0002-phone": {1, tt.wantResets / 5},
				"lobby-phone": {1, tt.wantResets / 5}, "desk-trio": {1, tt.wantResets / 5},
				"dead-phone": {0, 0}, "user0013-phone": {0, 0}, "user0014-phone": {1, 0},
			}
			gotOps := map[string][2]int{}
			for name := range wantOps {
				rebuilt, reset := env.Sim.DeviceOps(name)
				gotOps[name] = [2]int{rebuilt, reset}
			}
			if diff := cmp.Diff(wantOps, gotOps); diff != "" {
				t.Errorf("rebuilds and resets per device (-want +got):\n%s", diff)
			}

			stats := env.Sim.Stats()
			wantCalls := map[string]int{lookupPath: 10 + groupListings, rebuildPath: 6, resetPath: tt.wantResets}
			gotCalls := map[string]int{}
			for path := range wantCalls {
				gotCalls[path] = stats.Requests[path]
			}
			if diff := cmp.Diff(wantCalls, gotCalls); diff != "" {
				t.Errorf("device-related Odin requests (-want +got):\n%s", diff)
			}

			checkDeviceEventsAfterPasswords(t, env, jobID)
			if m := env.Mismatches(jobID); len(m) > 0 {
				t.Errorf("record differs from simulator:\n%s", strings.Join(m, "\n"))
			}
			checkCSVDeviceColumn(t, env, jobID, u(13), badRebuild)
		})
	}
}

// checkDeviceEventsAfterPasswords checks that each rebuild and reset happened after the
// new SIP password of every applied job user on that phone, that a reset followed its
// device's rebuild, and that the job completed after the last device event.
func checkDeviceEventsAfterPasswords(t *testing.T, env *testenv.Env, jobID string) {
	t.Helper()
	applied := map[string]bool{}
	err := env.Store.ForEachUser(context.Background(), jobID, func(rec results.UserRecord) error {
		applied[rec.UserID] = rec.State == results.UserApplied
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	events := env.Sim.DeviceEvents()
	if len(events) == 0 {
		t.Fatal("the simulator saw no device rebuild or reset")
	}
	rebuilt := map[string]bool{}
	for _, e := range events {
		for user, sets := range e.SIPPasswordSets {
			if applied[user] && sets == 0 {
				t.Errorf("%s of %s ran before the new SIP password of its user %s was set", e.Op, e.Device, user)
			}
		}
		switch e.Op {
		case "rebuild":
			rebuilt[e.Device] = true
		case "reset":
			if !rebuilt[e.Device] {
				t.Errorf("reset of %s ran before its rebuild", e.Device)
			}
		}
	}
	job, err := env.Store.Job(context.Background(), jobID)
	if err != nil {
		t.Fatal(err)
	}
	if last := events[len(events)-1].At; job.CompletedAt.Before(last) {
		t.Errorf("job completed at %v, before its last device event at %v", job.CompletedAt, last)
	}
}

func checkCSVDeviceColumn(t *testing.T, env *testenv.Env, jobID, userID, want string) {
	t.Helper()
	var buf strings.Builder
	if err := env.Store.WriteCSV(context.Background(), jobID, &buf); err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(strings.NewReader(buf.String())).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v", err)
	}
	column := slices.Index(records[0], "device")
	if column < 0 {
		t.Fatalf("CSV header %v has no device column", records[0])
	}
	for _, record := range records[1:] {
		if record[0] == userID {
			if record[column] != want {
				t.Errorf("CSV device of %s = %q, want %q", userID, record[column], want)
			}
			return
		}
	}
	t.Errorf("CSV has no row for %s", userID)
}

func TestDeviceStepRateLimit(t *testing.T) {
	t.Parallel()
	const (
		users = 60
		rate  = 40
	)
	shared := map[string][]string{}
	for i := 1; i <= users; i += 2 {
		shared[fmt.Sprintf("pair-%02d", i/2)] = []string{odintestUserID(i), odintestUserID(i + 1)}
	}
	env := testenv.Start(t, testenv.Options{
		Sim:         odintest.Config{Users: users, SIPGeneratorAcceptsLimit: true, Devices: odintest.DeviceLayout{Shared: shared}},
		Workers:     2,
		Concurrency: 8,
		RateLimit:   rate,
	})

	start := time.Now()
	env.Submit(tasks.BulkResetPayload{JobID: "device-rate", Type: results.SIP, Users: seededUsers(users), Devices: results.DevicesReset})
	job := env.Wait("device-rate", 60*time.Second)
	elapsed := time.Since(start)
	st := env.Sim.Stats()

	t.Logf("%d SIP users on %d shared phones, reset mode, 2 workers at %d req/s: %v, %d Odin requests, max %d in any 1 s",
		users, users/2, rate, elapsed.Round(100*time.Millisecond), st.Total, st.MaxPerSecond)
	if job.Applied != users || job.DeviceDone != users/2 {
		t.Fatalf("applied %d, devices done %d; want %d and %d", job.Applied, job.DeviceDone, users, users/2)
	}
	// The limiter admits at most rate requests per second. In-process workers under
	// -race on a loaded machine deliver some admitted requests late, so they bunch up
	// at the simulator. A device step that bypassed the limiter would send its 60 calls
	// at once, far above this bound.
	if limit := rate + rate/4; st.MaxPerSecond > limit {
		t.Errorf("Odin saw %d requests within one second, want at most %d", st.MaxPerSecond, limit)
	}
	if average := float64(st.Total) / elapsed.Seconds(); average > rate {
		t.Errorf("Odin saw %.1f requests per second on average, want at most %d", average, rate)
	}
	if st.Requests[rebuildPath] != users/2 || st.Requests[resetPath] != users/2 {
		t.Errorf("%d rebuilds and %d resets, want %d of each: one per shared phone", st.Requests[rebuildPath], st.Requests[resetPath], users/2)
	}
	for name := range shared {
		if rebuilt, reset := env.Sim.DeviceOps(name); rebuilt != 1 || reset != 1 {
			t.Errorf("%s rebuilt %d and reset %d times, want once each", name, rebuilt, reset)
		}
	}
	checkDeviceEventsAfterPasswords(t, env, "device-rate")
}

func TestDeviceStepRetriesTransientFaults(t *testing.T) {
	t.Parallel()
	const users = 16
	// At 20 requests per second the device calls spread over seconds, so faults switched
	// on when the device steps start reach them. Retries wait at least RetryBase, so the
	// faults stay on only until every device has had its first call.
	env := testenv.Start(t, testenv.Options{
		Sim:       odintest.Config{Users: users, SIPGeneratorAcceptsLimit: true},
		RateLimit: 20,
	})
	env.Submit(tasks.BulkResetPayload{JobID: "device-faults", Type: results.SIP, Users: seededUsers(users), Devices: results.DevicesReset})

	waitFor(t, "every device looked up", func() bool {
		job, err1 := env.Store.Job(context.Background(), "device-faults")
		progress, err2 := env.Store.DeviceProgress(context.Background(), "device-faults")
		return err1 == nil && err2 == nil && job.Applied == users && progress.Lookups == 0
	})
	env.Sim.SetFaults(odintest.Faults{Error500: 0.2, Error502HTML: 0.2, Seed: 8})
	waitFor(t, "a first rebuild of every device", func() bool {
		return env.Sim.Stats().Requests[rebuildPath] >= users
	})
	env.Sim.SetFaults(odintest.Faults{})
	job := env.Wait("device-faults", 90*time.Second)

	st := env.Sim.Stats()
	faulted := 0
	for _, path := range []string{rebuildPath, resetPath} {
		faulted += st.Statuses[path][500] + st.Statuses[path][502]
	}
	t.Logf("%d rebuilds and resets faulted and retried", faulted)
	if faulted == 0 {
		t.Fatal("no rebuild or reset was faulted; the test proves nothing: change the seed")
	}
	if job.Applied != users || job.DeviceDone != users {
		t.Fatalf("applied %d, devices done %d; want %d and %d", job.Applied, job.DeviceDone, users, users)
	}
	for _, row := range env.Rows("device-faults") {
		if row.Device != results.DeviceReset {
			t.Errorf("user %s: device %q, want %q", row.UserID, row.Device, results.DeviceReset)
		}
		device := strings.TrimSuffix(row.UserID, "@example.com") + "-phone"
		if rebuilt, reset := env.Sim.DeviceOps(device); rebuilt != 1 || reset != 1 {
			t.Errorf("%s rebuilt %d and reset %d times, want once each", device, rebuilt, reset)
		}
	}
	checkDeviceEventsAfterPasswords(t, env, "device-faults")
}

// waitFor waits until cond holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDeviceStepRecovers starts from records left by a crash or a lost enqueue and
// checks that a redelivered user task or the sweeper finishes the device steps.
func TestDeviceStepRecovers(t *testing.T) {
	tests := []struct {
		name string
		// lookUp records the device lookup before the workers see the job.
		lookUp bool
		// redeliver enqueues the user's reset:user task again; otherwise only the
		// sweeper can notice the stalled job.
		redeliver bool
	}{
		{"redelivered user task resumes the lookup", false, true},
		{"sweeper resumes a lookup whose task was lost", false, false},
		{"sweeper starts devices whose trigger was lost", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Only the test's own redelivery or the sweeper can finish the job, so the
			// sweeper runs only in the cases that rely on it.
			sweepInterval := time.Second
			if tt.redeliver {
				sweepInterval = -1
			}
			env := testenv.Start(t, testenv.Options{
				Sim:           odintest.Config{Users: 2},
				SweepInterval: sweepInterval,
				StallAfter:    time.Second,
			})
			ctx := context.Background()
			user := odintestUserID(1)
			applyWithoutTasks(t, env, "recover", user, results.DevicesReset)

			if tt.lookUp {
				rec, err := env.Store.User(ctx, "recover", user)
				if err != nil {
					t.Fatal(err)
				}
				followup, err := env.Store.RecordDeviceLookup(ctx, "recover", rec, "user0001-phone", results.DevicePending)
				if err != nil || followup != results.FollowupStartDevices {
					t.Fatalf("RecordDeviceLookup = %d, %v; want FollowupStartDevices", followup, err)
				}
			}
			if tt.redeliver {
				task, err := tasks.NewUserResetTask(tasks.UserResetPayload{
					JobID: "recover", UserID: user, Type: results.SIP,
					ServiceProviderID: env.Sim.ServiceProviderID(), GroupID: env.Sim.GroupID(),
				}, tasks.QueueDefault)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := env.Client.Enqueue(task); err != nil {
					t.Fatal(err)
				}
			}

			job := env.Wait("recover", 30*time.Second)
			if job.State != results.JobCompleted || job.DeviceDone != 1 {
				t.Fatalf("job %s with %d devices done, want completed with 1", job.State, job.DeviceDone)
			}
			if rebuilt, reset := env.Sim.DeviceOps("user0001-phone"); rebuilt != 1 || reset != 1 {
				t.Errorf("phone rebuilt %d and reset %d times, want once each", rebuilt, reset)
			}
			rows := env.Rows("recover")
			if len(rows) != 1 || rows[0].Device != results.DeviceReset {
				t.Errorf("rows = %+v, want one row with device %q", rows, results.DeviceReset)
			}
		})
	}
}

// applyWithoutTasks creates a one-user SIP job with a device step and marks the user
// applied directly in the record, as a crash right after the password was set leaves
// it: no task is queued and the device lookup is owed.
func applyWithoutTasks(t *testing.T, env *testenv.Env, jobID, user string, mode results.DeviceMode) {
	t.Helper()
	ctx := context.Background()
	_, _, err := env.Store.CreateJob(ctx, results.Job{
		ID: jobID, Type: results.SIP, ServiceProviderID: env.Sim.ServiceProviderID(), GroupID: env.Sim.GroupID(),
		Priority: tasks.PriorityDefault, Devices: mode,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.LoadUsers(ctx, jobID, []string{user}); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.SetCursor(ctx, jobID, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.WriteAhead(ctx, jobID, map[string]string{user: "Kx8#qLm2vRt9"}); err != nil {
		t.Fatal(err)
	}
	rec, err := env.Store.User(ctx, jobID, user)
	if err != nil {
		t.Fatal(err)
	}
	if completed, err := env.Store.MarkApplied(ctx, jobID, rec, 1); err != nil || completed {
		t.Fatalf("MarkApplied = %v, %v; want the job left running for its device step", completed, err)
	}
}

// TestDeviceStepOdinCalls measures the Odin requests per user that each device mode
// adds, on phones of one user each and on phones shared by two users.
func TestDeviceStepOdinCalls(t *testing.T) {
	const users = 200
	pairs := map[string][]string{}
	for i := 1; i <= users; i += 2 {
		pairs[fmt.Sprintf("pair-%03d", i/2)] = []string{odintestUserID(i), odintestUserID(i + 1)}
	}
	tests := []struct {
		name      string
		mode      results.DeviceMode
		layout    odintest.DeviceLayout
		wantExtra float64 // requests per user beyond a job without device step
	}{
		{"no device step", results.DevicesNone, odintest.DeviceLayout{}, 0},
		{"rebuild, own phones", results.DevicesRebuild, odintest.DeviceLayout{}, 2},
		{"reset, own phones", results.DevicesReset, odintest.DeviceLayout{}, 3},
		{"rebuild, phones of two users", results.DevicesRebuild, odintest.DeviceLayout{Shared: pairs}, 1.5},
		{"reset, phones of two users", results.DevicesReset, odintest.DeviceLayout{Shared: pairs}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.Start(t, testenv.Options{Sim: odintest.Config{
				Users: users, SIPGeneratorAcceptsLimit: true, Devices: tt.layout,
			}})
			env.Submit(tasks.BulkResetPayload{JobID: "calls", Type: results.SIP, Users: seededUsers(users), Devices: tt.mode})
			job := env.Wait("calls", 60*time.Second)
			if job.Applied != users {
				t.Fatalf("applied %d of %d", job.Applied, users)
			}

			st := env.Sim.Stats()
			extra := float64(st.Requests[lookupPath]-groupListings+st.Requests[rebuildPath]+st.Requests[resetPath]) / users
			t.Logf("%s: %.2f Odin requests per user in all, %.2f for the device step", tt.name, float64(st.Total)/users, extra)
			if extra != tt.wantExtra {
				t.Errorf("device step requests per user = %.3f, want %.3f", extra, tt.wantExtra)
			}
		})
	}
}
