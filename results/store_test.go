package results_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/results"
)

func TestCreateJob(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	in := results.Job{
		ID:                "job-1",
		Type:              results.SIP,
		ServiceProviderID: "sp1",
		GroupID:           "g1",
		AllUsers:          true,
		RequestedBy:       "ops@example.com",
		Priority:          "critical",
		CallbackURL:       "https://hooks.example.com/done",
		Devices:           results.DevicesReset,
		TTL:               2 * time.Hour,
	}
	want := in
	want.State = results.JobQueued
	want.CreatedAt = testNow

	got, created, err := s.CreateJob(t.Context(), in)
	if err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	if !created {
		t.Errorf("CreateJob created = false for a new job, want true")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CreateJob returned job (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, readJob(t, s, "job-1")); diff != "" {
		t.Errorf("Job after CreateJob (-want +got):\n%s", diff)
	}
	checkTTLs(t, rdb, "CreateJob", results.MaxTTL)
}

func TestCreateJobIdempotent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	_, created, err := s.CreateJob(t.Context(), results.Job{ID: "job-1", Type: results.Web, GroupID: "g1"})
	if err != nil || !created {
		t.Fatalf("first CreateJob = created %v, error %v; want true, nil", created, err)
	}
	if _, err := s.LoadUsers(t.Context(), "job-1", []string{"u1"}); err != nil {
		t.Fatalf("LoadUsers: %v", err)
	}
	wantStored := readJob(t, s, "job-1")

	again, created, err := s.CreateJob(t.Context(), results.Job{
		ID: "job-1", Type: results.Voicemail, GroupID: "other", TTL: 3 * time.Hour,
		CreatedAt: testNow.Add(time.Hour),
	})
	if err != nil {
		t.Fatalf("second CreateJob: %v", err)
	}
	if created {
		t.Errorf("second CreateJob created = true, want false")
	}
	if diff := cmp.Diff(wantStored, again); diff != "" {
		t.Errorf("second CreateJob did not return the existing job (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantStored, readJob(t, s, "job-1")); diff != "" {
		t.Errorf("second CreateJob changed the job (-want +got):\n%s", diff)
	}
}

func TestCreateJobStartsCountersAtZero(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	created := testNow.Add(-time.Hour)
	in := results.Job{
		ID: "job-1", Type: results.Web, TTL: time.Hour, CreatedAt: created,
		Total: 9, Applied: 3, Failed: 2, Cursor: 7, State: results.JobCompleted,
		DeviceTotal: 4, DeviceDone: 1, UsersLoaded: true,
		StartedAt: testNow, CompletedAt: testNow,
	}
	want := results.Job{ID: "job-1", Type: results.Web, TTL: time.Hour, CreatedAt: created, State: results.JobQueued}

	got, _, err := s.CreateJob(t.Context(), in)
	if err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CreateJob returned job (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, readJob(t, s, "job-1")); diff != "" {
		t.Errorf("stored job (-want +got):\n%s", diff)
	}
}

func TestCreateJobTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ttl     time.Duration
		want    time.Duration
		wantErr bool
	}{
		{name: "zero uses default", ttl: 0, want: results.DefaultTTL},
		{name: "minimum", ttl: results.MinTTL, want: results.MinTTL},
		{name: "maximum", ttl: results.MaxTTL, want: results.MaxTTL},
		{name: "one day", ttl: 24 * time.Hour, want: 24 * time.Hour},
		{name: "below minimum", ttl: results.MinTTL - time.Second, wantErr: true},
		{name: "above maximum", ttl: results.MaxTTL + time.Second, wantErr: true},
		{name: "negative", ttl: -time.Hour, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, rdb := newStore(t)

			job, created, err := s.CreateJob(t.Context(), results.Job{ID: "job-1", Type: results.SIP, TTL: tt.ttl})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("CreateJob(TTL %v) = %+v, created %v; want an error", tt.ttl, job, created)
				}
				if !strings.Contains(err.Error(), "TTL") {
					t.Errorf("error %q does not say the TTL is wrong", err)
				}
				if keys := allKeys(t, rdb); len(keys) != 0 {
					t.Errorf("rejected CreateJob wrote keys %v", keys)
				}
				return
			}

			if err != nil {
				t.Fatalf("CreateJob(TTL %v): %v", tt.ttl, err)
			}
			if job.TTL != tt.want {
				t.Errorf("returned TTL = %v, want %v", job.TTL, tt.want)
			}
			if got := readJob(t, s, "job-1").TTL; got != tt.want {
				t.Errorf("stored TTL = %v, want %v", got, tt.want)
			}
			ttl, err := rdb.TTL(t.Context(), jobKey("job-1", "meta")).Result()
			if err != nil {
				t.Fatalf("TTL: %v", err)
			}
			if ttl <= tt.want-time.Minute || ttl > tt.want {
				t.Errorf("Redis TTL of the job hash = %v, want about %v", ttl, tt.want)
			}
		})
	}
}

func TestCreateJobRejectsInvalidID(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	for _, id := range []string{"", "{job}", "a{b}c", "job/1", "job 1"} {
		_, _, err := s.CreateJob(t.Context(), results.Job{ID: id, Type: results.SIP})
		if err == nil {
			t.Errorf("CreateJob(ID %q) returned no error", id)
		}
	}
	if keys := allKeys(t, rdb); len(keys) != 0 {
		t.Errorf("rejected CreateJob calls wrote keys %v", keys)
	}
}

func TestJobNotFound(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	_, err := s.Job(t.Context(), "missing")
	if !errors.Is(err, results.ErrNotFound) {
		t.Errorf("Job(missing) error = %v, want ErrNotFound", err)
	}
}

func TestLoadUsers(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	createJob(t, s, "job-1", results.Web)
	users := []string{"u3", "u1", "u2"}

	job, err := s.LoadUsers(t.Context(), "job-1", users)
	if err != nil {
		t.Fatalf("LoadUsers: %v", err)
	}

	want := readJob(t, s, "job-1")
	if diff := cmp.Diff(want, job); diff != "" {
		t.Errorf("LoadUsers returned job differs from the stored one (-want +got):\n%s", diff)
	}
	if job.State != results.JobRunning {
		t.Errorf("State = %q, want %q", job.State, results.JobRunning)
	}
	if job.Total != 3 {
		t.Errorf("Total = %d, want 3", job.Total)
	}
	if !job.UsersLoaded {
		t.Errorf("UsersLoaded = false, want true")
	}
	if !job.StartedAt.Equal(testNow) {
		t.Errorf("StartedAt = %v, want %v", job.StartedAt, testNow)
	}
	if job.Pending() != 3 {
		t.Errorf("Pending() = %d, want 3", job.Pending())
	}

	ids, err := s.UserIDs(t.Context(), "job-1", 0, 10)
	if err != nil {
		t.Fatalf("UserIDs: %v", err)
	}
	if diff := cmp.Diff(users, ids); diff != "" {
		t.Errorf("user order (-want +got):\n%s", diff)
	}
	recs, err := s.Users(t.Context(), "job-1", users)
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	wantRecs := []results.UserRecord{
		{UserID: "u3", State: results.UserPending},
		{UserID: "u1", State: results.UserPending},
		{UserID: "u2", State: results.UserPending},
	}
	if diff := cmp.Diff(wantRecs, recs, ignoreRaw); diff != "" {
		t.Errorf("user records (-want +got):\n%s", diff)
	}
	checkTTLs(t, rdb, "LoadUsers", time.Hour)
}

func TestLoadUsersOnce(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	first := startJob(t, s, "job-1", results.Web, []string{"u1", "u2"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "pw1"})
	applyUser(t, s, "job-1", "u1")
	before := readJob(t, s, "job-1")

	again, err := s.LoadUsers(t.Context(), "job-1", []string{"x1", "u2", "u1"})
	if err != nil {
		t.Fatalf("second LoadUsers: %v", err)
	}
	if diff := cmp.Diff(before, again); diff != "" {
		t.Errorf("second LoadUsers changed the job (-want +got):\n%s", diff)
	}
	if first.Total != 2 || again.Total != 2 {
		t.Errorf("Total = %d then %d, want 2 both times", first.Total, again.Total)
	}

	ids, err := s.UserIDs(t.Context(), "job-1", 0, 10)
	if err != nil {
		t.Fatalf("UserIDs: %v", err)
	}
	if diff := cmp.Diff([]string{"u1", "u2"}, ids); diff != "" {
		t.Errorf("user order after second LoadUsers (-want +got):\n%s", diff)
	}
	want := results.UserRecord{UserID: "u1", State: results.UserApplied, Secret: "pw1", Attempts: 1, AppliedAt: testNow}
	if diff := cmp.Diff(want, readUser(t, s, "job-1", "u1"), ignoreRaw); diff != "" {
		t.Errorf("applied user after second LoadUsers (-want +got):\n%s", diff)
	}
	if _, err := s.User(t.Context(), "job-1", "x1"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("User(x1) error = %v, want ErrNotFound: the second list must be ignored", err)
	}
}

func TestLoadUsersEmptyCompletesJob(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	createJob(t, s, "job-1", results.Voicemail)

	job, err := s.LoadUsers(t.Context(), "job-1", nil)
	if err != nil {
		t.Fatalf("LoadUsers(nil): %v", err)
	}
	want := results.Job{
		ID: "job-1", Type: results.Voicemail, ServiceProviderID: "sp1", GroupID: "g1",
		State: results.JobCompleted, TTL: time.Hour, UsersLoaded: true,
		CreatedAt: testNow, StartedAt: testNow, CompletedAt: testNow,
	}
	if diff := cmp.Diff(want, job); diff != "" {
		t.Errorf("job after loading no users (-want +got):\n%s", diff)
	}
	checkTTLs(t, rdb, "LoadUsers(nil)", time.Hour)
}

func TestLoadUsersDropsDuplicates(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	job := startJob(t, s, "job-1", results.Web, []string{"u2", "u1", "u2", "u3", "u1"})

	if job.Total != 3 {
		t.Errorf("Total = %d, want 3 distinct users", job.Total)
	}
	ids, err := s.UserIDs(t.Context(), "job-1", 0, 10)
	if err != nil {
		t.Fatalf("UserIDs: %v", err)
	}
	if diff := cmp.Diff([]string{"u2", "u1", "u3"}, ids); diff != "" {
		t.Errorf("user order (-want +got):\n%s", diff)
	}

	// Settling every distinct user must complete the job.
	writeAhead(t, s, "job-1", secretsFor(ids, "pw"))
	var completions int
	for _, u := range ids {
		if applyUser(t, s, "job-1", u) {
			completions++
		}
	}
	if completions != 1 {
		t.Errorf("completions = %d, want 1", completions)
	}
}

func TestLoadUsersMissingOrFinishedJob(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)

	if _, err := s.LoadUsers(t.Context(), "missing", []string{"u1"}); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("LoadUsers(missing job) error = %v, want ErrNotFound", err)
	}

	createJob(t, s, "job-1", results.SIP)
	if _, err := s.Cancel(t.Context(), "job-1"); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	job, err := s.LoadUsers(t.Context(), "job-1", []string{"u1"})
	if err != nil {
		t.Fatalf("LoadUsers(cancelled job): %v", err)
	}
	if job.State != results.JobCancelled || job.Total != 0 || job.UsersLoaded {
		t.Errorf("LoadUsers(cancelled job) = state %q, total %d, loaded %v; want cancelled, 0, false",
			job.State, job.Total, job.UsersLoaded)
	}
	if _, err := s.User(t.Context(), "job-1", "u1"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("User(u1) of a job cancelled before loading: error %v, want ErrNotFound", err)
	}
}

// A fan-out task may run twice at once (asynq delivers at least once), so two LoadUsers
// calls can overlap. The user list must come out exactly once, in order.
func TestLoadUsersConcurrent(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	users := userIDs(2500) // more than one chunk of the bulk load

	for _, id := range []string{"job-1", "job-2", "job-3"} {
		createJob(t, s, id, results.Web)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				<-start
				if _, err := s.LoadUsers(t.Context(), id, users); err != nil {
					t.Errorf("LoadUsers(%s): %v", id, err)
				}
			})
		}
		close(start)
		wg.Wait()

		if got := readJob(t, s, id).Total; got != len(users) {
			t.Errorf("%s: Total = %d, want %d", id, got, len(users))
		}
		ids, err := s.UserIDs(t.Context(), id, 0, 2*len(users))
		if err != nil {
			t.Fatalf("UserIDs: %v", err)
		}
		if !slices.Equal(users, ids) {
			t.Errorf("%s: order list after concurrent loads has %d users, want %d in order (first: %v)",
				id, len(ids), len(users), ids[:min(5, len(ids))])
		}
	}
	checkTTLs(t, rdb, "concurrent LoadUsers", time.Hour)
}

func TestUserIDsAndForEachUser(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	users := userIDs(1203) // crosses two chunks of ForEachUser
	startJob(t, s, "job-1", results.SIP, users)

	tests := []struct {
		name         string
		start, count int
		want         []string
	}{
		{name: "first three", start: 0, count: 3, want: users[:3]},
		{name: "middle", start: 500, count: 2, want: users[500:502]},
		{name: "past the end", start: 1200, count: 10, want: users[1200:]},
		{name: "beyond", start: 5000, count: 10, want: []string{}},
		{name: "zero count", start: 0, count: 0, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.UserIDs(t.Context(), "job-1", tt.start, tt.count)
			if err != nil {
				t.Fatalf("UserIDs: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("UserIDs(%d, %d) (-want +got):\n%s", tt.start, tt.count, diff)
			}
		})
	}

	t.Run("ForEachUser visits all in order", func(t *testing.T) {
		var got []string
		err := s.ForEachUser(t.Context(), "job-1", func(rec results.UserRecord) error {
			got = append(got, rec.UserID)
			return nil
		})
		if err != nil {
			t.Fatalf("ForEachUser: %v", err)
		}
		if diff := cmp.Diff(users, got); diff != "" {
			t.Errorf("ForEachUser order (-want +got):\n%s", diff)
		}
	})

	t.Run("ForEachUser stops at the first error", func(t *testing.T) {
		stop := errors.New("stop")
		var visited int
		err := s.ForEachUser(t.Context(), "job-1", func(rec results.UserRecord) error {
			visited++
			if visited == 600 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) {
			t.Errorf("ForEachUser error = %v, want the callback's error", err)
		}
		if visited != 600 {
			t.Errorf("ForEachUser visited %d users, want 600", visited)
		}
	})
}

func TestUsersNotFound(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.SIP, []string{"u1"})

	if _, err := s.Users(t.Context(), "job-1", []string{"u1", "nobody"}); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("Users with an unknown user: error %v, want ErrNotFound", err)
	}
	if _, err := s.User(t.Context(), "other", "u1"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("User of an unknown job: error %v, want ErrNotFound", err)
	}
	recs, err := s.Users(t.Context(), "job-1", nil)
	if err != nil || recs != nil {
		t.Errorf("Users(no IDs) = %v, %v; want nil, nil", recs, err)
	}
}

func TestUserWithJobStatus(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.SIP, []string{"u1"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "pw1"})
	const reason = "Odin login failed: 401 Unauthorized"
	if err := s.SetReason(t.Context(), "job-1", reason); err != nil {
		t.Fatalf("SetReason: %v", err)
	}

	rec, status, err := s.UserWithJobStatus(t.Context(), "job-1", "u1")
	if err != nil {
		t.Fatalf("UserWithJobStatus: %v", err)
	}
	wantStatus := results.JobStatus{
		State: results.JobRunning, Reason: reason, Type: results.SIP, ServiceProviderID: "sp1", GroupID: "g1", Total: 1, UsersLoaded: true,
	}
	if diff := cmp.Diff(wantStatus, status); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if err := s.SetCursor(t.Context(), "job-1", 1); err != nil {
		t.Fatal(err)
	}
	_, begun, err := s.BeginAttempt(t.Context(), "job-1", "u1")
	if err != nil {
		t.Fatalf("BeginAttempt: %v", err)
	}
	wantStatus.Cursor = 1
	if diff := cmp.Diff(wantStatus, begun); diff != "" {
		t.Errorf("status of BeginAttempt (-want +got):\n%s", diff)
	}
	want := results.UserRecord{UserID: "u1", State: results.UserPending, Secret: "pw1"}
	if diff := cmp.Diff(want, rec, ignoreRaw); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}

	// The record read here must serve a compare-and-set like one read by User.
	if _, err := s.MarkApplied(t.Context(), "job-1", rec, 1); err != nil {
		t.Errorf("MarkApplied with the record of UserWithJobStatus: %v", err)
	}

	_, status, err = s.UserWithJobStatus(t.Context(), "job-1", "nobody")
	if !errors.Is(err, results.ErrNotFound) {
		t.Errorf("unknown user: error %v, want ErrNotFound", err)
	}
	if status.State != results.JobCompleted {
		t.Errorf("unknown user: job state %q, want %q", status.State, results.JobCompleted)
	}
	if _, _, err := s.UserWithJobStatus(t.Context(), "missing", "u1"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("unknown job: error %v, want ErrNotFound", err)
	}
}

func TestWriteAhead(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.Web, []string{"u1", "u2", "u3", "u4"})

	written := writeAhead(t, s, "job-1", map[string]string{"u1": "first-1", "u2": "first-2"})
	if diff := cmp.Diff([]string{"u1", "u2"}, written); diff != "" {
		t.Errorf("first WriteAhead wrote (-want +got):\n%s", diff)
	}
	applyUser(t, s, "job-1", "u1")
	failUser(t, s, "job-1", "u4", "[Error 4410] Service is not assigned")

	// A resumed fan-out generates values for all users again; only u3 needs one.
	written = writeAhead(t, s, "job-1", secretsFor([]string{"u1", "u2", "u3", "u4"}, "second"))
	if diff := cmp.Diff([]string{"u3"}, written); diff != "" {
		t.Errorf("resumed WriteAhead wrote (-want +got):\n%s", diff)
	}

	recs, err := s.Users(t.Context(), "job-1", []string{"u1", "u2", "u3", "u4"})
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	want := []results.UserRecord{
		{UserID: "u1", State: results.UserApplied, Secret: "first-1", Attempts: 1, AppliedAt: testNow},
		{UserID: "u2", State: results.UserPending, Secret: "first-2"},
		{UserID: "u3", State: results.UserPending, Secret: "second-u3"},
		{UserID: "u4", State: results.UserFailed, Attempts: 3, Reason: "[Error 4410] Service is not assigned"},
	}
	if diff := cmp.Diff(want, recs, ignoreRaw); diff != "" {
		t.Errorf("records after the resumed WriteAhead (-want +got):\n%s", diff)
	}

	if got := writeAhead(t, s, "job-1", nil); got != nil {
		t.Errorf("WriteAhead(nil) wrote %v", got)
	}
	if _, err := s.WriteAhead(t.Context(), "job-1", map[string]string{"nobody": "x"}); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("WriteAhead for an unknown user: error %v, want ErrNotFound", err)
	}
}

// Two overlapping fan-outs write values for the same users. Each user must end with
// exactly one value: the one from the call whose result lists that user.
func TestWriteAheadConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	users := userIDs(300)
	startJob(t, s, "job-1", results.SIP, users)

	tags := []string{"a", "b", "c"}
	written := make([][]string, len(tags))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, tag := range tags {
		wg.Go(func() {
			<-start
			w, err := s.WriteAhead(t.Context(), "job-1", secretsFor(users, tag))
			if err != nil {
				t.Errorf("WriteAhead(%s): %v", tag, err)
			}
			written[i] = w
		})
	}
	close(start)
	wg.Wait()

	writer := map[string]string{}
	for i, w := range written {
		for _, u := range w {
			if prev, ok := writer[u]; ok {
				t.Errorf("user %s written by both %s and %s", u, prev, tags[i])
			}
			writer[u] = tags[i]
		}
	}
	recs, err := s.Users(t.Context(), "job-1", users)
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	for _, rec := range recs {
		tag, ok := writer[rec.UserID]
		if !ok {
			t.Errorf("user %s: no writer reported it, secret %q", rec.UserID, rec.Secret)
			continue
		}
		if want := tag + "-" + rec.UserID; rec.Secret != want {
			t.Errorf("user %s: secret %q, want %q from the writer that reported it", rec.UserID, rec.Secret, want)
		}
	}
}

func TestReplaceSecret(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.Web, []string{"u1", "u2"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "rejected", "u2": "pw2"})
	stale := readUser(t, s, "job-1", "u1")

	next, err := s.ReplaceSecret(t.Context(), "job-1", stale, "fresh")
	if err != nil {
		t.Fatalf("ReplaceSecret: %v", err)
	}
	want := results.UserRecord{UserID: "u1", State: results.UserPending, Secret: "fresh", Regenerated: true}
	if diff := cmp.Diff(want, next, ignoreRaw); diff != "" {
		t.Errorf("ReplaceSecret returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, readUser(t, s, "job-1", "u1"), ignoreRaw); diff != "" {
		t.Errorf("stored record (-want +got):\n%s", diff)
	}

	t.Run("stale record conflicts", func(t *testing.T) {
		_, err := s.ReplaceSecret(t.Context(), "job-1", stale, "other")
		if !errors.Is(err, results.ErrConflict) {
			t.Errorf("ReplaceSecret with a stale record: error %v, want ErrConflict", err)
		}
		if got := readUser(t, s, "job-1", "u1").Secret; got != "fresh" {
			t.Errorf("secret after the conflict = %q, want %q", got, "fresh")
		}
	})

	t.Run("returned record chains", func(t *testing.T) {
		again, err := s.ReplaceSecret(t.Context(), "job-1", next, "fresher")
		if err != nil {
			t.Fatalf("ReplaceSecret with the returned record: %v", err)
		}
		if _, err := s.MarkApplied(t.Context(), "job-1", again, 2); err != nil {
			t.Errorf("MarkApplied with the returned record: %v", err)
		}
	})

	t.Run("settled user conflicts", func(t *testing.T) {
		applyUser(t, s, "job-1", "u2")
		_, err := s.ReplaceSecret(t.Context(), "job-1", readUser(t, s, "job-1", "u2"), "other")
		if !errors.Is(err, results.ErrConflict) {
			t.Errorf("ReplaceSecret on an applied user: error %v, want ErrConflict", err)
		}
		if got := readUser(t, s, "job-1", "u2").Secret; got != "pw2" {
			t.Errorf("secret of the applied user = %q, want %q", got, "pw2")
		}
	})
}

func TestMarkAppliedAndFailed(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	startJob(t, s, "job-1", results.Web, []string{"u1", "u2", "u3"})
	writeAhead(t, s, "job-1", secretsFor([]string{"u1", "u2", "u3"}, "pw"))

	if applyUser(t, s, "job-1", "u1") {
		t.Errorf("first settle completed the job")
	}
	checkTTLs(t, rdb, "MarkApplied", time.Hour)
	if failUser(t, s, "job-1", "u2", "[Error 4410] Service is not assigned") {
		t.Errorf("second settle completed the job")
	}
	checkTTLs(t, rdb, "MarkFailed", time.Hour)

	job := readJob(t, s, "job-1")
	if job.Applied != 1 || job.Failed != 1 || job.Pending() != 1 || job.State != results.JobRunning {
		t.Errorf("after two settles: applied %d, failed %d, pending %d, state %q; want 1, 1, 1, running",
			job.Applied, job.Failed, job.Pending(), job.State)
	}

	if !applyUser(t, s, "job-1", "u3") {
		t.Errorf("last settle did not complete the job")
	}
	job = readJob(t, s, "job-1")
	if job.Applied != 2 || job.Failed != 1 || job.State != results.JobCompleted {
		t.Errorf("after the last settle: applied %d, failed %d, state %q; want 2, 1, completed",
			job.Applied, job.Failed, job.State)
	}
	if !job.CompletedAt.Equal(testNow) {
		t.Errorf("CompletedAt = %v, want %v", job.CompletedAt, testNow)
	}

	recs, err := s.Users(t.Context(), "job-1", []string{"u1", "u2", "u3"})
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	want := []results.UserRecord{
		{UserID: "u1", State: results.UserApplied, Secret: "pw-u1", Attempts: 1, AppliedAt: testNow},
		{UserID: "u2", State: results.UserFailed, Secret: "pw-u2", Attempts: 3, Reason: "[Error 4410] Service is not assigned"},
		{UserID: "u3", State: results.UserApplied, Secret: "pw-u3", Attempts: 1, AppliedAt: testNow},
	}
	if diff := cmp.Diff(want, recs, ignoreRaw); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestMarkAppliedConflicts(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.Web, []string{"u1", "u2"})
	beforeWrite := readUser(t, s, "job-1", "u1")
	writeAhead(t, s, "job-1", map[string]string{"u1": "pw1", "u2": "pw2"})

	tests := []struct {
		name   string
		settle func() (bool, error)
	}{
		{
			name: "record read before the write-ahead",
			settle: func() (bool, error) {
				return s.MarkApplied(t.Context(), "job-1", beforeWrite, 1)
			},
		},
		{
			name: "record read before the value was replaced",
			settle: func() (bool, error) {
				rec := readUser(t, s, "job-1", "u2")
				if _, err := s.ReplaceSecret(t.Context(), "job-1", rec, "pw2-fresh"); err != nil {
					t.Fatalf("ReplaceSecret: %v", err)
				}
				return s.MarkFailed(t.Context(), "job-1", rec, "rejected", 1)
			},
		},
		{
			name: "same record settled twice",
			settle: func() (bool, error) {
				rec := readUser(t, s, "job-1", "u1")
				if _, err := s.MarkApplied(t.Context(), "job-1", rec, 1); err != nil {
					t.Fatalf("first MarkApplied: %v", err)
				}
				return s.MarkFailed(t.Context(), "job-1", rec, "late failure", 2)
			},
		},
		{
			name: "record that is already applied",
			settle: func() (bool, error) {
				return s.MarkApplied(t.Context(), "job-1", readUser(t, s, "job-1", "u1"), 2)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			completed, err := tt.settle()
			if !errors.Is(err, results.ErrConflict) {
				t.Errorf("error = %v, want ErrConflict", err)
			}
			if completed {
				t.Errorf("a conflicting settle reported completion")
			}
		})
	}

	job := readJob(t, s, "job-1")
	if job.Applied != 1 || job.Failed != 0 {
		t.Errorf("counters after conflicts: applied %d, failed %d; want 1, 0", job.Applied, job.Failed)
	}
	if got := readUser(t, s, "job-1", "u2"); got.State != results.UserPending || got.Secret != "pw2-fresh" {
		t.Errorf("u2 = state %q, secret %q; want pending with the replaced value", got.State, got.Secret)
	}
}

// Many workers settle the last users of a job at once: exactly one of them must see the
// completion, so exactly one reset:complete task is enqueued.
func TestSettleCompletesOnceUnderConcurrency(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	const workers, usersPerWorker = 50, 4
	users := userIDs(workers * usersPerWorker)
	startJob(t, s, "job-1", results.SIP, users)
	writeAhead(t, s, "job-1", secretsFor(users, "pw"))

	var completions atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			for i, u := range users[w*usersPerWorker : (w+1)*usersPerWorker] {
				rec, err := s.User(t.Context(), "job-1", u)
				if err != nil {
					t.Errorf("User(%s): %v", u, err)
					return
				}
				var completed bool
				if i%2 == 0 {
					completed, err = s.MarkApplied(t.Context(), "job-1", rec, 1)
				} else {
					completed, err = s.MarkFailed(t.Context(), "job-1", rec, "rejected", 1)
				}
				if err != nil {
					t.Errorf("settle %s: %v", u, err)
				}
				if completed {
					completions.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()

	if got := completions.Load(); got != 1 {
		t.Errorf("%d settles reported completion, want exactly 1", got)
	}
	job := readJob(t, s, "job-1")
	if job.Applied != 100 || job.Failed != 100 || job.State != results.JobCompleted {
		t.Errorf("job: applied %d, failed %d, state %q; want 100, 100, completed", job.Applied, job.Failed, job.State)
	}
}

// asynq may deliver a per-user task twice at once. Both deliveries race to settle the
// user; exactly one wins per user and exactly one settle completes the job.
func TestSettleDuplicateDeliveries(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	const workers, usersPerWorker = 50, 4
	users := userIDs(workers * usersPerWorker)
	startJob(t, s, "job-1", results.Web, users)
	writeAhead(t, s, "job-1", secretsFor(users, "pw"))

	var completions atomic.Int32
	wins := make([]atomic.Int32, len(users))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		// Worker w and worker w+25 (mod 50) get the same users.
		first := (w % (workers / 2)) * 2 * usersPerWorker
		mine := []int{first, first + 1, first + 2, first + 3, first + 4, first + 5, first + 6, first + 7}
		wg.Go(func() {
			<-start
			for _, i := range mine {
				rec, err := s.User(t.Context(), "job-1", users[i])
				if err != nil {
					t.Errorf("User(%s): %v", users[i], err)
					return
				}
				var completed bool
				if w < workers/2 {
					completed, err = s.MarkApplied(t.Context(), "job-1", rec, 1)
				} else {
					completed, err = s.MarkFailed(t.Context(), "job-1", rec, "retries exhausted", 5)
				}
				switch {
				case errors.Is(err, results.ErrConflict):
				case err != nil:
					t.Errorf("settle %s: %v", users[i], err)
				default:
					wins[i].Add(1)
				}
				if completed {
					completions.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()

	for i := range wins {
		if n := wins[i].Load(); n != 1 {
			t.Errorf("user %s settled %d times, want 1", users[i], n)
		}
	}
	if got := completions.Load(); got != 1 {
		t.Errorf("%d settles reported completion, want exactly 1", got)
	}
	job := readJob(t, s, "job-1")
	if job.Applied+job.Failed != len(users) || job.State != results.JobCompleted {
		t.Errorf("job: applied %d + failed %d, state %q; want %d, completed", job.Applied, job.Failed, job.State, len(users))
	}
}

func TestCancelledJobNeverCompletes(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	users := []string{"u1", "u2", "u3"}
	startJob(t, s, "job-1", results.Web, users)
	writeAhead(t, s, "job-1", secretsFor(users, "pw"))
	applyUser(t, s, "job-1", "u1")

	if _, err := s.Cancel(t.Context(), "job-1"); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	// Tasks already running finish after the cancellation.
	if applyUser(t, s, "job-1", "u2") {
		t.Errorf("settling u2 of a cancelled job reported completion")
	}
	if failUser(t, s, "job-1", "u3", "rejected") {
		t.Errorf("settling the last user of a cancelled job reported completion")
	}

	job := readJob(t, s, "job-1")
	if job.State != results.JobCancelled {
		t.Errorf("State = %q, want %q", job.State, results.JobCancelled)
	}
	if job.Applied != 2 || job.Failed != 1 {
		t.Errorf("counters: applied %d, failed %d; want 2, 1", job.Applied, job.Failed)
	}
}

func TestSetCursorNeverGoesBack(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.Web, userIDs(30))

	steps := []struct {
		set  int
		want int
	}{
		{set: 10, want: 10},
		{set: 5, want: 10},
		{set: 10, want: 10},
		{set: 0, want: 10},
		{set: 30, want: 30},
		{set: 20, want: 30},
	}
	for _, step := range steps {
		if err := s.SetCursor(t.Context(), "job-1", step.set); err != nil {
			t.Fatalf("SetCursor(%d): %v", step.set, err)
		}
		if got := readJob(t, s, "job-1").Cursor; got != step.want {
			t.Errorf("after SetCursor(%d): Cursor = %d, want %d", step.set, got, step.want)
		}
	}
}

func TestSetCursorConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.Web, userIDs(100))

	var wg sync.WaitGroup
	for n := 1; n <= 100; n++ {
		wg.Go(func() {
			if err := s.SetCursor(t.Context(), "job-1", n); err != nil {
				t.Errorf("SetCursor(%d): %v", n, err)
			}
		})
	}
	wg.Wait()
	if got := readJob(t, s, "job-1").Cursor; got != 100 {
		t.Errorf("Cursor = %d, want 100", got)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()

	t.Run("queued", func(t *testing.T) {
		t.Parallel()
		s, _ := newStore(t)
		createJob(t, s, "job-1", results.SIP)
		job, err := s.Cancel(t.Context(), "job-1")
		if err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if job.State != results.JobCancelled || !job.CompletedAt.Equal(testNow) || job.Reason == "" {
			t.Errorf("Cancel = state %q, completed at %v, reason %q; want cancelled, %v, a reason",
				job.State, job.CompletedAt, job.Reason, testNow)
		}
	})

	t.Run("running", func(t *testing.T) {
		t.Parallel()
		s, _ := newStore(t)
		startJob(t, s, "job-1", results.SIP, []string{"u1", "u2"})
		job, err := s.Cancel(t.Context(), "job-1")
		if err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if diff := cmp.Diff(readJob(t, s, "job-1"), job); diff != "" {
			t.Errorf("Cancel returned a job that differs from the stored one (-want +got):\n%s", diff)
		}
		if job.State != results.JobCancelled {
			t.Errorf("State = %q, want %q", job.State, results.JobCancelled)
		}
	})

	t.Run("twice", func(t *testing.T) {
		t.Parallel()
		s, _ := newStore(t)
		startJob(t, s, "job-1", results.SIP, []string{"u1"})
		first, err := s.Cancel(t.Context(), "job-1")
		if err != nil {
			t.Fatalf("first Cancel: %v", err)
		}
		second, err := s.Cancel(t.Context(), "job-1")
		if err != nil {
			t.Fatalf("second Cancel: %v", err)
		}
		if diff := cmp.Diff(first, second); diff != "" {
			t.Errorf("second Cancel changed the job (-want +got):\n%s", diff)
		}
	})

	t.Run("completed", func(t *testing.T) {
		t.Parallel()
		s, _ := newStore(t)
		startJob(t, s, "job-1", results.SIP, []string{"u1"})
		writeAhead(t, s, "job-1", map[string]string{"u1": "pw1"})
		applyUser(t, s, "job-1", "u1")

		_, err := s.Cancel(t.Context(), "job-1")
		if !errors.Is(err, results.ErrJobFinished) {
			t.Errorf("Cancel(completed job) error = %v, want ErrJobFinished", err)
		}
		if got := readJob(t, s, "job-1").State; got != results.JobCompleted {
			t.Errorf("State after cancelling a completed job = %q, want %q", got, results.JobCompleted)
		}
	})

	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		s, rdb := newStore(t)
		if _, err := s.Cancel(t.Context(), "missing"); !errors.Is(err, results.ErrNotFound) {
			t.Errorf("Cancel(missing job) error = %v, want ErrNotFound", err)
		}
		if keys := allKeys(t, rdb); len(keys) != 0 {
			t.Errorf("Cancel of a missing job wrote keys %v", keys)
		}
	})
}

func TestSetReason(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.SIP, []string{"u1"})

	const reason = "Odin login failed: 401 Unauthorized"
	if err := s.SetReason(t.Context(), "job-1", reason); err != nil {
		t.Fatalf("SetReason: %v", err)
	}
	if got := readJob(t, s, "job-1").Reason; got != reason {
		t.Errorf("Reason = %q, want %q", got, reason)
	}
	if err := s.SetReason(t.Context(), "job-1", ""); err != nil {
		t.Fatalf("SetReason(empty): %v", err)
	}
	if got := readJob(t, s, "job-1").Reason; got != "" {
		t.Errorf("Reason after clearing = %q, want empty", got)
	}

	cancelled, err := s.Cancel(t.Context(), "job-1")
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if err := s.SetReason(t.Context(), "job-1", reason); err != nil {
		t.Fatalf("SetReason on a cancelled job: %v", err)
	}
	if got := readJob(t, s, "job-1").Reason; got != cancelled.Reason {
		t.Errorf("SetReason changed the reason of a cancelled job to %q, want %q", got, cancelled.Reason)
	}

	if err := s.SetReason(t.Context(), "missing", reason); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("SetReason(missing job) error = %v, want ErrNotFound", err)
	}
}

func TestFailUnsent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.Web, []string{"u1", "u2"})
	recs, err := s.Users(t.Context(), "job-1", []string{"u1", "u2"})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := s.FailUnsent(t.Context(), "job-1", recs[0], "user of group \"grp2\""); err != nil {
		t.Fatalf("FailUnsent on a running job: %v", err)
	}
	if job := readJob(t, s, "job-1"); job.Failed != 1 {
		t.Errorf("failed = %d, want 1", job.Failed)
	}

	if _, err := s.Cancel(t.Context(), "job-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FailUnsent(t.Context(), "job-1", recs[1], "user of group \"grp2\""); !errors.Is(err, results.ErrJobFinished) {
		t.Errorf("FailUnsent on a cancelled job: %v, want ErrJobFinished", err)
	}
	if job := readJob(t, s, "job-1"); job.Failed != 1 {
		t.Errorf("failed = %d after FailUnsent on the cancelled job, want 1: the record must stay as the cancel left it", job.Failed)
	}
}

func TestClearReason(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	startJob(t, s, "job-1", results.SIP, []string{"u1"})
	const prefix = "fan-out waits: "

	if err := s.SetReason(t.Context(), "job-1", "Odin login failed: 401"); err != nil {
		t.Fatal(err)
	}
	if cleared, err := s.ClearReason(t.Context(), "job-1", prefix); err != nil || cleared {
		t.Errorf("ClearReason of another reason = %v, %v; want false, nil", cleared, err)
	}
	if got := readJob(t, s, "job-1").Reason; got != "Odin login failed: 401" {
		t.Errorf("Reason = %q, want the other reason kept", got)
	}

	if err := s.SetReason(t.Context(), "job-1", prefix+"Odin: 500; retrying"); err != nil {
		t.Fatal(err)
	}
	if cleared, err := s.ClearReason(t.Context(), "job-1", prefix); err != nil || !cleared {
		t.Errorf("ClearReason = %v, %v; want true, nil", cleared, err)
	}
	if got := readJob(t, s, "job-1").Reason; got != "" {
		t.Errorf("Reason = %q, want it cleared", got)
	}

	if cleared, err := s.ClearReason(t.Context(), "missing", prefix); err != nil || cleared {
		t.Errorf("ClearReason of a missing job = %v, %v; want false, nil", cleared, err)
	}
	if keys, _ := rdb.Keys(t.Context(), "*missing*").Result(); len(keys) != 0 {
		t.Errorf("ClearReason of a missing job created %v", keys)
	}
}

func TestSetAudit(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	createJob(t, s, "job-1", results.SIP)

	if err := s.SetAudit(t.Context(), "job-1", map[string]string{"submitted_by": "ops", "host": "batch-1"}); err != nil {
		t.Fatalf("SetAudit: %v", err)
	}
	if err := s.SetAudit(t.Context(), "job-1", map[string]string{"cancelled_by": "alice"}); err != nil {
		t.Fatalf("second SetAudit: %v", err)
	}
	if err := s.SetAudit(t.Context(), "job-1", nil); err != nil {
		t.Fatalf("SetAudit(nil): %v", err)
	}
	got, err := s.AuditFields(t.Context(), "job-1")
	if err != nil {
		t.Fatalf("AuditFields: %v", err)
	}
	want := map[string]string{"submitted_by": "ops", "host": "batch-1", "cancelled_by": "alice"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AuditFields (-want +got):\n%s", diff)
	}
	checkTTLs(t, rdb, "SetAudit", time.Hour)

	if err := s.SetAudit(t.Context(), "missing", map[string]string{"by": "x"}); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("SetAudit(missing job) error = %v, want ErrNotFound", err)
	}
	checkTTLs(t, rdb, "SetAudit on a missing job", time.Hour)
}

func TestSetDevice(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.SIP, []string{"u1", "u2"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "pw1", "u2": "pw2"})
	applyUser(t, s, "job-1", "u1")
	rec := readUser(t, s, "job-1", "u1")

	got, err := s.SetDevice(t.Context(), "job-1", rec, "Polycom-1234", "rebuilt")
	if err != nil {
		t.Fatalf("SetDevice: %v", err)
	}
	want := results.UserRecord{
		UserID: "u1", State: results.UserApplied, Secret: "pw1", Attempts: 1, AppliedAt: testNow,
		Device: "rebuilt", DeviceName: "Polycom-1234",
	}
	if diff := cmp.Diff(want, got, ignoreRaw); diff != "" {
		t.Errorf("SetDevice returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, readUser(t, s, "job-1", "u1"), ignoreRaw); diff != "" {
		t.Errorf("stored record (-want +got):\n%s", diff)
	}
	if _, err := s.SetDevice(t.Context(), "job-1", rec, "Polycom-1234", "reset"); !errors.Is(err, results.ErrConflict) {
		t.Errorf("SetDevice with a stale record: error %v, want ErrConflict", err)
	}
}

func TestJobs(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	for i, id := range []string{"job-b", "job-a", "job-c", "job-d"} {
		_, _, err := s.CreateJob(t.Context(), results.Job{
			ID: id, Type: results.Web, CreatedAt: testNow.Add(time.Duration(i) * time.Minute),
		})
		if err != nil {
			t.Fatalf("CreateJob(%s): %v", id, err)
		}
	}
	ids := func(jobs []results.Job) []string {
		var out []string
		for _, j := range jobs {
			out = append(out, j.ID)
		}
		return out
	}

	all, err := s.Jobs(t.Context(), 10)
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	if diff := cmp.Diff([]string{"job-d", "job-c", "job-a", "job-b"}, ids(all)); diff != "" {
		t.Errorf("Jobs(10) newest first (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(readJob(t, s, "job-c"), all[1]); diff != "" {
		t.Errorf("listed job differs from Job (-want +got):\n%s", diff)
	}

	two, err := s.Jobs(t.Context(), 2)
	if err != nil {
		t.Fatalf("Jobs(2): %v", err)
	}
	if diff := cmp.Diff([]string{"job-d", "job-c"}, ids(two)); diff != "" {
		t.Errorf("Jobs(2) (-want +got):\n%s", diff)
	}

	// Remove job-c's hash as its expiry would, leaving its index entry behind.
	if err := rdb.Del(t.Context(), jobKey("job-c", "meta")).Err(); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	after, err := s.Jobs(t.Context(), 10)
	if err != nil {
		t.Fatalf("Jobs after expiry: %v", err)
	}
	if diff := cmp.Diff([]string{"job-d", "job-a", "job-b"}, ids(after)); diff != "" {
		t.Errorf("Jobs after job-c expired (-want +got):\n%s", diff)
	}
	members, err := rdb.ZRange(t.Context(), results.DefaultKeyPrefix+"jobs", 0, -1).Result()
	if err != nil {
		t.Fatalf("ZRANGE: %v", err)
	}
	if slices.Contains(members, "job-c") {
		t.Errorf("index still lists the expired job: %v", members)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	startJob(t, s, "job-1", results.SIP, []string{"u1", "u2"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "pw1"})
	startJob(t, s, "job-2", results.SIP, []string{"u1"})

	if err := s.Delete(t.Context(), "job-1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Job(t.Context(), "job-1"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("Job after Delete: error %v, want ErrNotFound", err)
	}
	if _, err := s.User(t.Context(), "job-1", "u1"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("User after Delete: error %v, want ErrNotFound", err)
	}
	for _, key := range allKeys(t, rdb) {
		if strings.Contains(key, "{job-1}") {
			t.Errorf("key %s survived Delete", key)
		}
	}
	jobs, err := s.Jobs(t.Context(), 10)
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	if len(jobs) != 1 || jobs[0].ID != "job-2" {
		t.Errorf("Jobs after Delete = %v, want only job-2", jobs)
	}
	if err := s.Delete(t.Context(), "job-1"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("second Delete: error %v, want ErrNotFound", err)
	}
	if got := readJob(t, s, "job-2"); got.Total != 1 {
		t.Errorf("Delete of job-1 touched job-2: total %d", got.Total)
	}
}

func TestKeyPrefix(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t, results.WithKeyPrefix("tenant7:"))
	startJob(t, s, "job-1", results.SIP, []string{"u1"})

	keys := allKeys(t, rdb)
	if len(keys) == 0 {
		t.Fatalf("no keys written")
	}
	for _, key := range keys {
		if !strings.HasPrefix(key, "tenant7:") {
			t.Errorf("key %s does not start with the configured prefix", key)
		}
	}
	if s.Redis() != rdb {
		t.Errorf("Redis() does not return the client the store was built with")
	}
}

func TestNoteProgress(t *testing.T) {
	t.Parallel()
	now := testNow
	s, rdb := newStore(t, results.WithClock(func() time.Time { return now }))
	startJob(t, s, "job-1", results.Web, []string{"u1", "u2"})

	steps := []struct {
		name     string
		at       time.Time
		progress int
		want     time.Time
	}{
		{name: "first note", at: testNow, progress: 0, want: testNow},
		{name: "same progress later", at: testNow.Add(time.Minute), progress: 0, want: testNow},
		{name: "progress moved", at: testNow.Add(2 * time.Minute), progress: 1, want: testNow.Add(2 * time.Minute)},
		{name: "same progress again", at: testNow.Add(10 * time.Minute), progress: 1, want: testNow.Add(2 * time.Minute)},
	}
	for _, step := range steps {
		now = step.at
		got, err := s.NoteProgress(t.Context(), "job-1", step.progress)
		if err != nil {
			t.Fatalf("%s: NoteProgress: %v", step.name, err)
		}
		if !got.Equal(step.want) {
			t.Errorf("%s: NoteProgress = %v, want %v", step.name, got, step.want)
		}
	}
	checkTTLs(t, rdb, "NoteProgress", time.Hour)

	if _, err := s.NoteProgress(t.Context(), "missing", 3); err != nil {
		t.Errorf("NoteProgress(missing job): %v", err)
	}
	for _, key := range allKeys(t, rdb) {
		if strings.Contains(key, "{missing}") {
			t.Errorf("NoteProgress on a missing job created key %s", key)
		}
	}
}

func TestClaimAudit(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.Web, []string{"u1"})

	for _, tc := range []struct{ value, want string }{{"a", "a"}, {"b", "a"}, {"a", "a"}} {
		if got, err := s.ClaimAudit(t.Context(), "job-1", "retried_by", tc.value); err != nil || got != tc.want {
			t.Errorf("ClaimAudit(%q) = %q, %v; want %q", tc.value, got, err, tc.want)
		}
	}
	if err := s.ReleaseAudit(t.Context(), "job-1", "retried_by", "b"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ClaimAudit(t.Context(), "job-1", "retried_by", "b"); got != "a" {
		t.Errorf("after a release by a non-holder the field holds %q, want a", got)
	}
	if err := s.ReleaseAudit(t.Context(), "job-1", "retried_by", "a"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ClaimAudit(t.Context(), "job-1", "retried_by", "b"); got != "b" {
		t.Errorf("after the holder's release the claim got %q, want b", got)
	}
	if _, err := s.ClaimAudit(t.Context(), "missing", "retried_by", "a"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("ClaimAudit on a missing job: %v, want ErrNotFound", err)
	}
}
