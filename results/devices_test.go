package results_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/results"
)

// startDeviceJob creates a SIP job with the given device mode and loads its users.
func startDeviceJob(t *testing.T, s *results.Store, id string, mode results.DeviceMode, users []string) {
	t.Helper()
	_, created, err := s.CreateJob(t.Context(), results.Job{
		ID: id, Type: results.SIP, ServiceProviderID: "sp1", GroupID: "g1", TTL: time.Hour, Devices: mode,
	})
	if err != nil || !created {
		t.Fatalf("CreateJob(%s) = created %v, %v; want a new job", id, created, err)
	}
	if _, err := s.LoadUsers(t.Context(), id, users); err != nil {
		t.Fatalf("LoadUsers(%s): %v", id, err)
	}
}

// recordLookup reads the user and records its device lookup.
func recordLookup(t *testing.T, s *results.Store, jobID, userID, device, outcome string) (results.Followup, error) {
	t.Helper()
	return s.RecordDeviceLookup(t.Context(), jobID, readUser(t, s, jobID, userID), device, outcome)
}

func readDevice(t *testing.T, s *results.Store, jobID, name string) results.DeviceRecord {
	t.Helper()
	dev, err := s.Device(t.Context(), jobID, name)
	if err != nil {
		t.Fatalf("Device(%s, %s): %v", jobID, name, err)
	}
	return dev
}

func readProgress(t *testing.T, s *results.Store, jobID string) results.DeviceProgress {
	t.Helper()
	p, err := s.DeviceProgress(t.Context(), jobID)
	if err != nil {
		t.Fatalf("DeviceProgress(%s): %v", jobID, err)
	}
	return p
}

// finishDevice stores the outcome, copies it to the device's users and finishes the
// device, as the reset:device task does.
func finishDevice(t *testing.T, s *results.Store, jobID, name, outcome string) (results.Followup, error) {
	t.Helper()
	dev, err := s.SetDeviceOutcome(t.Context(), jobID, readDevice(t, s, jobID, name), outcome)
	if err != nil {
		return results.FollowupNone, err
	}
	for _, u := range dev.Users {
		if _, err := s.SetDevice(t.Context(), jobID, readUser(t, s, jobID, u), name, outcome); err != nil {
			return results.FollowupNone, err
		}
	}
	return s.FinishDevice(t.Context(), jobID, dev)
}

func TestDeviceStepsHoldCompletion(t *testing.T) {
	s, rdb := newStore(t)
	const job = "devices"
	startDeviceJob(t, s, job, results.DevicesReset, userIDs(5))

	steps := []struct {
		name         string
		do           func() (results.Followup, error)
		want         results.Followup
		wantProgress results.DeviceProgress
	}{
		{"apply u1", func() (results.Followup, error) {
			return followupOf(applyUser(t, s, job, "u1")), nil
		}, results.FollowupNone, results.DeviceProgress{Lookups: 1}},
		{"u1 has phone-a", func() (results.Followup, error) {
			return recordLookup(t, s, job, "u1", "phone-a", results.DevicePending)
		}, results.FollowupNone, results.DeviceProgress{Total: 1}},
		{"apply u2", func() (results.Followup, error) {
			return followupOf(applyUser(t, s, job, "u2")), nil
		}, results.FollowupNone, results.DeviceProgress{Lookups: 1, Total: 1}},
		{"u2 shares phone-a", func() (results.Followup, error) {
			return recordLookup(t, s, job, "u2", "phone-a", results.DevicePending)
		}, results.FollowupNone, results.DeviceProgress{Total: 1}},
		{"apply u3", func() (results.Followup, error) {
			return followupOf(applyUser(t, s, job, "u3")), nil
		}, results.FollowupNone, results.DeviceProgress{Lookups: 1, Total: 1}},
		{"u3 has no device", func() (results.Followup, error) {
			return recordLookup(t, s, job, "u3", "", "skipped: the user has no device")
		}, results.FollowupNone, results.DeviceProgress{Total: 1}},
		{"u4 fails", func() (results.Followup, error) {
			return followupOf(failUser(t, s, job, "u4", "Odin: [Error 4410] Service is not assigned")), nil
		}, results.FollowupNone, results.DeviceProgress{Total: 1}},
		{"apply the last user u5", func() (results.Followup, error) {
			return followupOf(applyUser(t, s, job, "u5")), nil
		}, results.FollowupNone, results.DeviceProgress{Lookups: 1, Total: 1}},
		{"last lookup starts the device steps", func() (results.Followup, error) {
			return recordLookup(t, s, job, "u5", "phone-b", results.DevicePending)
		}, results.FollowupStartDevices, results.DeviceProgress{Total: 2}},
		{"starting again is allowed", func() (results.Followup, error) {
			return s.DeviceFollowup(t.Context(), job)
		}, results.FollowupStartDevices, results.DeviceProgress{Total: 2}},
		{"phone-a reset", func() (results.Followup, error) {
			dev, err := s.MarkDeviceRebuilt(t.Context(), job, readDevice(t, s, job, "phone-a"))
			if err != nil || !dev.Rebuilt {
				return results.FollowupNone, fmt.Errorf("MarkDeviceRebuilt = %+v, %v", dev, err)
			}
			return finishDevice(t, s, job, "phone-a", results.DeviceReset)
		}, results.FollowupNone, results.DeviceProgress{Total: 2, Done: 1}},
		{"last device completes the job", func() (results.Followup, error) {
			return finishDevice(t, s, job, "phone-b", "failed: rebuild: Odin: device offline")
		}, results.FollowupComplete, results.DeviceProgress{Total: 2, Done: 2}},
		{"completed job needs nothing", func() (results.Followup, error) {
			return s.DeviceFollowup(t.Context(), job)
		}, results.FollowupNone, results.DeviceProgress{Total: 2, Done: 2}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			got, err := step.do()
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if got != step.want {
				t.Errorf("followup = %d, want %d", got, step.want)
			}
			if diff := cmp.Diff(step.wantProgress, readProgress(t, s, job)); diff != "" {
				t.Errorf("progress (-want +got):\n%s", diff)
			}
			wantState := results.JobRunning
			if step.wantProgress.Done == 2 {
				wantState = results.JobCompleted
			}
			if state := readJob(t, s, job).State; state != wantState {
				t.Errorf("job state = %s, want %s", state, wantState)
			}
		})
	}

	j := readJob(t, s, job)
	if j.DeviceTotal != 2 || j.DeviceDone != 2 || j.CompletedAt.IsZero() {
		t.Errorf("job DeviceTotal %d, DeviceDone %d, CompletedAt %v; want 2, 2 and a time", j.DeviceTotal, j.DeviceDone, j.CompletedAt)
	}
	wantDevices := map[string][2]string{
		"u1": {"phone-a", results.DeviceReset},
		"u2": {"phone-a", results.DeviceReset},
		"u3": {"", "skipped: the user has no device"},
		"u4": {"", ""},
		"u5": {"phone-b", "failed: rebuild: Odin: device offline"},
	}
	gotDevices := map[string][2]string{}
	for _, u := range userIDs(5) {
		rec := readUser(t, s, job, u)
		gotDevices[u] = [2]string{rec.DeviceName, rec.Device}
	}
	if diff := cmp.Diff(wantDevices, gotDevices); diff != "" {
		t.Errorf("user devices (-want +got):\n%s", diff)
	}
	if got := readDevice(t, s, job, "phone-a"); !cmp.Equal(got.Users, []string{"u1", "u2"}) || !got.Done {
		t.Errorf("phone-a = %+v, want users u1 and u2, done", got)
	}
	if _, err := s.FinishDevice(t.Context(), job, readDevice(t, s, job, "phone-b")); !errors.Is(err, results.ErrConflict) {
		t.Errorf("FinishDevice of a finished device: err = %v, want ErrConflict", err)
	}
	checkTTLs(t, rdb, "the device steps", time.Hour)
}

func followupOf(completed bool) results.Followup {
	if completed {
		return results.FollowupComplete
	}
	return results.FollowupNone
}

func TestDeviceLookupOwedOnlyWithDeviceStep(t *testing.T) {
	tests := []struct {
		name          string
		job           results.Job
		wantCompleted bool
		wantLookups   int
	}{
		{"SIP rebuild", results.Job{Type: results.SIP, Devices: results.DevicesRebuild}, false, 1},
		{"SIP reset", results.Job{Type: results.SIP, Devices: results.DevicesReset}, false, 1},
		{"SIP without device step", results.Job{Type: results.SIP}, true, 0},
		{"web with a device mode", results.Job{Type: results.Web, Devices: results.DevicesReset}, true, 0},
		{"SIP dry run", results.Job{Type: results.SIP, Devices: results.DevicesReset, DryRun: true}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t)
			spec := tt.job
			spec.ID, spec.ServiceProviderID, spec.GroupID, spec.TTL = "j1", "sp1", "g1", time.Hour
			if _, _, err := s.CreateJob(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
			if _, err := s.LoadUsers(t.Context(), "j1", []string{"u1"}); err != nil {
				t.Fatal(err)
			}
			writeAhead(t, s, "j1", secretsFor([]string{"u1"}, "v"))

			if got := applyUser(t, s, "j1", "u1"); got != tt.wantCompleted {
				t.Errorf("MarkApplied completed = %v, want %v", got, tt.wantCompleted)
			}
			if got := readProgress(t, s, "j1").Lookups; got != tt.wantLookups {
				t.Errorf("lookups owed = %d, want %d", got, tt.wantLookups)
			}
			if got := readJob(t, s, "j1").HasDeviceStep(); got != (tt.wantLookups > 0) {
				t.Errorf("HasDeviceStep = %v, want %v", got, tt.wantLookups > 0)
			}
		})
	}
}

func TestFailedLastUserStartsDevices(t *testing.T) {
	s, _ := newStore(t)
	startDeviceJob(t, s, "j1", results.DevicesRebuild, userIDs(2))
	applyUser(t, s, "j1", "u1")
	if _, err := recordLookup(t, s, "j1", "u1", "phone-a", results.DevicePending); err != nil {
		t.Fatal(err)
	}

	if completed := failUser(t, s, "j1", "u2", "Odin: user not found"); completed {
		t.Fatal("MarkFailed completed the job although phone-a is not rebuilt")
	}
	got, err := s.DeviceFollowup(t.Context(), "j1")
	if err != nil {
		t.Fatal(err)
	}
	if got != results.FollowupStartDevices {
		t.Errorf("DeviceFollowup = %d, want FollowupStartDevices", got)
	}
	if state := readJob(t, s, "j1").State; state != results.JobRunning {
		t.Errorf("job state = %s, want running", state)
	}
}

func TestLastLookupWithoutDevicesCompletes(t *testing.T) {
	s, _ := newStore(t)
	startDeviceJob(t, s, "j1", results.DevicesReset, userIDs(2))
	applyUser(t, s, "j1", "u1")
	applyUser(t, s, "j1", "u2")

	first, err := recordLookup(t, s, "j1", "u1", "", "skipped: the user has no device")
	if err != nil || first != results.FollowupNone {
		t.Fatalf("first lookup = %d, %v; want FollowupNone", first, err)
	}
	last, err := recordLookup(t, s, "j1", "u2", "sp-phone", `skipped: device "sp-phone" is at Service Provider level`)
	if err != nil || last != results.FollowupComplete {
		t.Fatalf("last lookup = %d, %v; want FollowupComplete", last, err)
	}
	if j := readJob(t, s, "j1"); j.State != results.JobCompleted || j.DeviceTotal != 0 {
		t.Errorf("job = %s with %d devices, want completed with 0", j.State, j.DeviceTotal)
	}
	if _, err := s.Device(t.Context(), "j1", "sp-phone"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("skipped device registered: Device err = %v, want ErrNotFound", err)
	}
}

func TestRecordDeviceLookupRejects(t *testing.T) {
	s, _ := newStore(t)
	startDeviceJob(t, s, "j1", results.DevicesReset, userIDs(3))
	stale := readUser(t, s, "j1", "u1")
	applyUser(t, s, "j1", "u1")
	applyUser(t, s, "j1", "u3")
	if _, err := recordLookup(t, s, "j1", "u3", "", "skipped: the user has no device"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		jobID   string
		rec     results.UserRecord
		device  string
		outcome string
		wantErr error
	}{
		{"record read before the apply", "j1", stale, "phone", results.DevicePending, results.ErrConflict},
		{"pending user", "j1", readUser(t, s, "j1", "u2"), "phone", results.DevicePending, results.ErrConflict},
		{"lookup recorded already", "j1", readUser(t, s, "j1", "u3"), "phone", results.DevicePending, results.ErrConflict},
		{"pending step without a device", "j1", readUser(t, s, "j1", "u1"), "", results.DevicePending, nil},
		{"empty outcome", "j1", readUser(t, s, "j1", "u1"), "phone", "", nil},
		{"unknown job", "nojob", readUser(t, s, "j1", "u1"), "phone", results.DevicePending, results.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.RecordDeviceLookup(t.Context(), tt.jobID, tt.rec, tt.device, tt.outcome)
			if err == nil {
				t.Fatal("RecordDeviceLookup succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if got := readProgress(t, s, "j1"); got != (results.DeviceProgress{Lookups: 1}) {
		t.Errorf("progress after rejected calls = %+v, want one lookup owed", got)
	}
}

func TestDeviceStateTransitions(t *testing.T) {
	s, _ := newStore(t)
	startDeviceJob(t, s, "j1", results.DevicesReset, userIDs(2))
	applyUser(t, s, "j1", "u1")
	if _, err := recordLookup(t, s, "j1", "u1", "phone-a", results.DevicePending); err != nil {
		t.Fatal(err)
	}
	pending := readDevice(t, s, "j1", "phone-a")
	rebuilt, err := s.MarkDeviceRebuilt(t.Context(), "j1", pending)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		do      func() error
		wantErr error
	}{
		{"rebuilt twice", func() error {
			_, err := s.MarkDeviceRebuilt(t.Context(), "j1", rebuilt)
			return err
		}, results.ErrConflict},
		{"outcome from a stale read", func() error {
			_, err := s.SetDeviceOutcome(t.Context(), "j1", pending, results.DeviceReset)
			return err
		}, results.ErrConflict},
		{"finish without an outcome", func() error {
			_, err := s.FinishDevice(t.Context(), "j1", rebuilt)
			return err
		}, results.ErrConflict},
		{"unknown device", func() error {
			_, err := s.Device(t.Context(), "j1", "phone-z")
			return err
		}, results.ErrNotFound},
		{"device record not read from the store", func() error {
			_, err := s.SetDeviceOutcome(t.Context(), "j1", results.DeviceRecord{Name: "phone-z"}, results.DeviceReset)
			return err
		}, results.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if _, err := s.Device(t.Context(), "j1", "phone-z"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("a rejected update created device phone-z: err = %v", err)
	}
	if got := readDevice(t, s, "j1", "phone-a"); !got.Rebuilt || got.Outcome != "" || got.Done {
		t.Errorf("phone-a = %+v, want rebuilt and nothing more", got)
	}
}

func TestForEachDeviceVisitsEachOnce(t *testing.T) {
	s, _ := newStore(t)
	const devices = 1200
	users := userIDs(devices)
	startDeviceJob(t, s, "j1", results.DevicesRebuild, users)
	for i, u := range users {
		applyUser(t, s, "j1", u)
		if _, err := recordLookup(t, s, "j1", u, fmt.Sprintf("phone-%d", i%(devices/2)), results.DevicePending); err != nil {
			t.Fatal(err)
		}
	}

	seen := map[string]int{}
	usersSeen := 0
	err := s.ForEachDevice(t.Context(), "j1", func(d results.DeviceRecord) error {
		seen[d.Name]++
		usersSeen += len(d.Users)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != devices/2 || usersSeen != devices {
		t.Errorf("visited %d devices with %d users, want %d devices with %d users", len(seen), usersSeen, devices/2, devices)
	}
	for name, n := range seen {
		if n != 1 {
			t.Errorf("device %s visited %d times", name, n)
		}
	}
	if got := readProgress(t, s, "j1"); got != (results.DeviceProgress{Total: devices / 2}) {
		t.Errorf("progress = %+v, want %d devices and no lookup owed", got, devices/2)
	}
}
