package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// strayTaskSetup creates a running SIP job of two users of sp1/grp1 on a simulator. With
// written set, both users have their value written ahead and the fan-out is done;
// otherwise the fan-out has not reached them.
func strayTaskSetup(t *testing.T, written bool) (*tasks.Handlers, *odintest.Server, *results.Store) {
	t.Helper()
	sim, err := odintest.NewServer(odintest.Config{Users: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	user, password := sim.Login()
	client, err := odin.NewClient(sim.URL, user, password, odin.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	rd := testredis.New(t)
	store := results.NewStore(rd.Client)
	queue := asynq.NewClient(rd.Opt)
	t.Cleanup(func() { queue.Close() })

	ctx := context.Background()
	users := []string{odintest.SeededUserID(1), odintest.SeededUserID(2)}
	if _, _, err := store.CreateJob(ctx, results.Job{ID: "job-1", Type: results.SIP, ServiceProviderID: "sp1", GroupID: "grp1", Priority: "default"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.LoadUsers(ctx, "job-1", users); err != nil {
		t.Fatal(err)
	}
	if written {
		if _, err := store.WriteAhead(ctx, "job-1", map[string]string{users[0]: "Sip-Value-1a", users[1]: "Sip-Value-2b"}); err != nil {
			t.Fatal(err)
		}
		if err := store.SetCursor(ctx, "job-1", len(users)); err != nil {
			t.Fatal(err)
		}
	}
	return &tasks.Handlers{Store: store, Odin: client, Client: queue}, sim, store
}

func userTask(t *testing.T, p tasks.UserResetPayload) *asynq.Task {
	t.Helper()
	task, err := tasks.NewUserResetTask(p, tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func TestUserTaskMustMatchItsJob(t *testing.T) {
	t.Parallel()
	user := odintest.SeededUserID(1)
	tests := []struct {
		name string
		p    tasks.UserResetPayload
	}{
		{"another credential", tasks.UserResetPayload{JobID: "job-1", UserID: user, Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1"}},
		{"voicemail", tasks.UserResetPayload{JobID: "job-1", UserID: user, Type: "vm", ServiceProviderID: "sp1", GroupID: "grp1"}},
		{"another group", tasks.UserResetPayload{JobID: "job-1", UserID: user, Type: results.SIP, ServiceProviderID: "sp1", GroupID: "grp2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, sim, store := strayTaskSetup(t, true)
			// The task ends without an error, so asynq frees its TaskID, which may be the
			// one of the user's own task.
			task := userTask(t, tt.p)
			if err := h.HandleUserReset(context.Background(), task); err != nil {
				t.Fatalf("HandleUserReset = %v, want nil", err)
			}
			// Had it failed for another reason, the error handler must not fail the user.
			h.HandleError(context.Background(), task, fmt.Errorf("Odin timed out: %w", asynq.SkipRetry))
			if got := sim.Stats().Total; got != 0 {
				t.Errorf("%d Odin requests, want none", got)
			}
			rec, err := store.User(context.Background(), "job-1", user)
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != results.UserPending || rec.Secret != "Sip-Value-1a" {
				t.Errorf("record %s with value %q, want pending with its value kept", rec.State, rec.Secret)
			}
		})
	}

	// The matching task resets the user, with the type spelled another way.
	h, sim, _ := strayTaskSetup(t, true)
	p := tasks.UserResetPayload{JobID: "job-1", UserID: user, Type: "SIP", ServiceProviderID: "sp1", GroupID: "grp1"}
	if err := h.HandleUserReset(context.Background(), userTask(t, p)); err != nil {
		t.Fatalf("matching task: %v", err)
	}
	if value, _, _ := sim.Credential(user, odintest.KindSIP); value != "Sip-Value-1a" {
		t.Errorf("Odin's SIP password %q, want the record's value", value)
	}
}

func TestUserTaskOutsideTheJob(t *testing.T) {
	t.Parallel()
	h, sim, _ := strayTaskSetup(t, true)
	p := tasks.UserResetPayload{JobID: "job-1", UserID: "stranger@example.com", Type: results.SIP, ServiceProviderID: "sp1", GroupID: "grp1"}
	err := h.HandleUserReset(context.Background(), userTask(t, p))
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), `user "stranger@example.com" is not a user of job job-1`) {
		t.Errorf("HandleUserReset = %v, want an error that skips retries and says the user is not in the job", err)
	}
	if got := sim.Stats().Total; got != 0 {
		t.Errorf("%d Odin requests, want none", got)
	}
}

func TestUserTaskBeforeUsersStored(t *testing.T) {
	t.Parallel()
	h, sim, store := strayTaskSetup(t, true)
	if _, _, err := store.CreateJob(context.Background(), results.Job{ID: "job-2", Type: results.SIP, ServiceProviderID: "sp1", GroupID: "grp1", Priority: "default"}); err != nil {
		t.Fatal(err)
	}
	p := tasks.UserResetPayload{JobID: "job-2", UserID: odintest.SeededUserID(1), Type: results.SIP, ServiceProviderID: "sp1", GroupID: "grp1"}
	if err := h.HandleUserReset(context.Background(), userTask(t, p)); err != nil {
		t.Errorf("HandleUserReset = %v, want nil: the fan-out enqueues the user's task", err)
	}
	if got := sim.Stats().Total; got != 0 {
		t.Errorf("%d Odin requests, want none", got)
	}
}

func TestUserTaskBeforeFanOutDropped(t *testing.T) {
	t.Parallel()
	h, sim, store := strayTaskSetup(t, false)
	user := odintest.SeededUserID(2)
	p := tasks.UserResetPayload{JobID: "job-1", UserID: user, Type: results.SIP, ServiceProviderID: "sp1", GroupID: "grp1"}
	if err := h.HandleUserReset(context.Background(), userTask(t, p)); err != nil {
		t.Fatalf("HandleUserReset = %v, want nil: the fan-out enqueues the user's task", err)
	}
	if got := sim.Stats().Total; got != 0 {
		t.Errorf("%d Odin requests, want none", got)
	}
	rec, err := store.User(context.Background(), "job-1", user)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != results.UserPending {
		t.Errorf("record %s (%s), want the user still pending", rec.State, rec.Reason)
	}
}

// TestFanOutReplacesStrayTasks: tasks made outside the fan-out hold the TaskIDs of three
// users' tasks when the fan-out enqueues them. One was archived because it ran before its
// job existed. Two are scheduled for later, one with another credential type and one
// with the fan-out's own payload. The fan-out must replace both, so
// the users are reset without waiting for the stalled-job sweeper.
func TestFanOutReplacesStrayTasks(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 4}})
	users := seededUsers(4)
	stray := func(userID string, typ results.CredentialType, opts ...asynq.Option) {
		t.Helper()
		task := userTask(t, tasks.UserResetPayload{JobID: "strays", UserID: userID, Type: typ, ServiceProviderID: "sp1", GroupID: "grp1"})
		if _, err := env.Client.Enqueue(task, opts...); err != nil {
			t.Fatal(err)
		}
	}
	stray(users[0], results.SIP) // runs before its job exists: archived
	stray(users[1], results.Web, asynq.ProcessIn(time.Hour))
	stray(users[2], results.SIP, asynq.ProcessIn(time.Hour)) // the fan-out's payload, for later
	inspector := asynq.NewInspector(env.Redis.Opt)
	defer inspector.Close()
	waitFor(t, "the first stray task archived", func() bool {
		info, err := inspector.GetTaskInfo(tasks.QueueDefault, tasks.UserTaskID("strays", users[0]))
		return err == nil && info.State == asynq.TaskStateArchived
	})

	env.Submit(tasks.BulkResetPayload{JobID: "strays", Type: results.SIP, Users: users})
	job := env.Wait("strays", 20*time.Second)
	if job.Applied != 4 {
		t.Errorf("%d of 4 users applied, %d failed", job.Applied, job.Failed)
	}
	for _, u := range users {
		if _, count, _ := env.Sim.Credential(u, odintest.KindWeb); count != 0 {
			t.Errorf("web password of %s set %d times, want never", u, count)
		}
	}
	if m := env.Mismatches(job.ID); len(m) > 0 {
		t.Errorf("record differs from simulator: %v", m)
	}
}
