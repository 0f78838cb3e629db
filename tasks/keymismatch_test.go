package tasks_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// TestUserResetWithAnotherResultsKey runs a reset:user task on a worker whose results key
// did not seal the user's value. The task must wait for a worker with the right key
// instead of failing the user or spending its attempts, and the job's reason must explain why.
func TestUserResetWithAnotherResultsKey(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	ctx := t.Context()
	fleetKey, err := results.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := results.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	fleet := results.NewStore(rd.Client, results.WithSealer(results.NewKeyring(fleetKey)))
	if _, _, err := fleet.CreateJob(ctx, results.Job{ID: "job-k", Type: results.Web, ServiceProviderID: "sp1", GroupID: "g1", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.LoadUsers(ctx, "job-k", []string{"u1@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.WriteAhead(ctx, "job-k", map[string]string{"u1@example.com": "Pw-Fleet-123456"}); err != nil {
		t.Fatal(err)
	}

	h := &tasks.Handlers{Store: results.NewStore(rd.Client, results.WithSealer(results.NewKeyring(otherKey)))}
	task, err := tasks.NewUserResetTask(tasks.UserResetPayload{
		JobID: "job-k", UserID: "u1@example.com", Type: results.Web, ServiceProviderID: "sp1", GroupID: "g1",
	}, tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	err = h.HandleUserReset(ctx, task)

	var wait *tasks.WaitError
	if !errors.As(err, &wait) {
		t.Fatalf("HandleUserReset = %v, want a *tasks.WaitError so no attempt is spent", err)
	}
	if tasks.IsFailure(err) {
		t.Errorf("IsFailure(%v) = true, want false: the user's reset did not fail", err)
	}
	job, err := fleet.Job(ctx, "job-k")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(job.Reason, fleetKey.ID()) || !strings.Contains(job.Reason, "RESULTS_KEY") {
		t.Errorf("job reason = %q, want it to name the key %s and RESULTS_KEY", job.Reason, fleetKey.ID())
	}
	rec, err := fleet.User(ctx, "job-k", "u1@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != results.UserPending || rec.Secret != "Pw-Fleet-123456" {
		t.Errorf("user = %s with value %q, want pending with the value written ahead", rec.State, rec.Secret)
	}
}
