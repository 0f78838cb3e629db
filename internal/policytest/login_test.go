package policytest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// TestLoginFailurePausesFleet breaks the Odin login in the middle of a job run by three
// workers (each with its own Odin client, as separate processes have), keeps it broken
// for a few cooldowns, then repairs it. While it is broken, the job must show the reason
// and spend no retry. The fleet must stop calling Odin except for about one login per
// worker per cooldown. Once the login works again, the job must finish by itself.
func TestLoginFailurePausesFleet(t *testing.T) {
	requireRealRedis(t)
	t.Parallel()
	const (
		workers     = 3
		concurrency = 20
	)
	// The cooldown is longer than the limiter's maximum wait of 5 s, as the default of
	// 60 s is, so paused tasks go back to asynq instead of waiting in the limiter.
	cooldown := sized(6*time.Second, time.Minute)
	broken := sized(15*time.Second, 3*time.Minute)
	users := 300

	tests := []struct {
		name       string
		breakLogin func(sim *odintest.Server)
		// fixLogin gets the admin login the workers use.
		fixLogin func(sim *odintest.Server, user, password string)
	}{
		{
			name: "401 wrong password",
			breakLogin: func(sim *odintest.Server) {
				user, _ := sim.Login()
				sim.SetCredentials(user, "a-password-the-workers-do-not-have")
			},
			fixLogin: func(sim *odintest.Server, user, password string) { sim.SetCredentials(user, password) },
		},
		{
			name:       "402 password change required",
			breakLogin: func(sim *odintest.Server) { sim.SetLoginPasswordChangeRequired(true) },
			fixLogin: func(sim *odintest.Server, _, _ string) {
				sim.SetLoginPasswordChangeRequired(false)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.Start(t, testenv.Options{
				Sim:     odintest.Config{Users: users, Latency: 10 * time.Millisecond},
				Workers: workers, Concurrency: concurrency, RateLimit: 50, LoginCooldown: cooldown,
			})
			ctx := context.Background()
			jobID := "login-" + strings.Fields(tt.name)[0]
			env.Submit(tasks.BulkResetPayload{JobID: jobID, Type: results.Web, Users: seededUsers(users)})
			waitUntil(t, 30*time.Second, "the first 30 users applied", func() bool {
				job, err := env.Store.Job(ctx, jobID)
				return err == nil && job.Applied >= 30
			})

			// Break the login and make every worker log in again.
			user, password := env.Sim.Login()
			tt.breakLogin(env.Sim)
			env.Sim.ExpireTokens()
			brokenAt := time.Now()
			before := env.Sim.Stats()

			// The first failed login pauses the fleet and sets the job's reason.
			var job results.Job
			waitUntil(t, 10*time.Second, "the job to show the login failure", func() bool {
				var err error
				job, err = env.Store.Job(ctx, jobID)
				return err == nil && strings.HasPrefix(job.Reason, "Odin login failed: ")
			})
			pausedAt := time.Now()
			paused := env.Sim.Stats()
			t.Logf("job reason while the login fails: %q", job.Reason)
			appliedWhenBroken := job.Applied

			waitUntil(t, broken+time.Second, "the outage to pass", func() bool { return time.Since(pausedAt) >= broken })
			during := env.Sim.Stats()
			tt.fixLogin(env.Sim, user, password)
			fixedAt := time.Now()
			job = waitJob(t, env.Store, jobID, 2*cooldown+time.Minute)

			const login = "POST /auth/token"
			logins := during.Requests[login] - paused.Requests[login]
			others := during.Total - paused.Total - logins
			t.Logf("until the first failed login (%v): %d requests already scheduled, %d of them logins",
				pausedAt.Sub(brokenAt).Round(10*time.Millisecond), paused.Total-before.Total, paused.Requests[login]-before.Requests[login])
			t.Logf("then %v of failing logins with a %v cooldown: %d login attempts (%.1f per minute) and %d other requests from %d workers; job done %v after the fix",
				broken, cooldown, logins, float64(logins)/broken.Minutes(), others, workers, time.Since(fixedAt).Round(100*time.Millisecond))

			checkAllApplied(t, job, users)
			if job.Reason != "" {
				t.Errorf("completed job keeps the reason %q, want it cleared", job.Reason)
			}
			// After each cooldown the first worker to get a request slot tries to log in,
			// fails, and pauses the fleet again, so each cooldown lets at most about one
			// login per worker through.
			cycles := int(broken/cooldown) + 1
			if limit := workers * cycles; logins > limit {
				t.Errorf("%d login attempts during %v of failing logins, want at most %d (one per worker per cooldown of %v)", logins, broken, limit, cooldown)
			}
			if logins == 0 {
				t.Errorf("no login attempt while the login was broken: the workers never tried again")
			}
			// When a pause ends, the tasks that return reserve request slots before the
			// first of them gets the 401 that leads to a login, so the login waits behind
			// those slots. Each cooldown can therefore send up to one request per worker
			// slot with the rejected token, and nothing more.
			if limit := workers * concurrency * cycles; others > limit {
				t.Errorf("%d Odin requests other than logins while the fleet was paused, want at most %d (one per worker slot per cooldown)", others, limit)
			}
			if got := attemptCounts(t, env.Store, jobID); got[1] != users {
				t.Errorf("attempts per user = %v, want every user applied at its first counted attempt, because waiting for a login spends no retry", got)
			}
			if m := mismatches(t, env.Store, jobID, fromSimulator(env.Sim.Simulator)); len(m) > 0 {
				t.Errorf("record differs from Odin:\n%s", strings.Join(m, "\n"))
			}
			if appliedWhenBroken >= users {
				t.Errorf("all users were applied before the login broke: the test did not cover a running job")
			}
		})
	}
}

// TestLoginPausesDoubleUntilRestart keeps the Odin login broken: each failed login in a
// row must pause the fleet twice as long as the one before, so that a night of wrong
// credentials does not lock the admin account. A worker started with the right
// credentials must then end the pause at once, and the next failed login, after the
// login worked again, must pause for the first length again.
func TestLoginPausesDoubleUntilRestart(t *testing.T) {
	requireRealRedis(t)
	t.Parallel()
	const (
		users    = 60
		cooldown = time.Second
	)
	env := testenv.Start(t, testenv.Options{
		Sim:     odintest.Config{Users: users},
		Workers: 1, Concurrency: 5, RateLimit: 50, LoginCooldown: cooldown,
		// Paused tasks go back to asynq until the pause ends, as with the defaults of a
		// 60 s cooldown and a 5 s limiter wait.
		MaxWait: 200 * time.Millisecond,
	})
	ctx := context.Background()
	env.Submit(tasks.BulkResetPayload{JobID: "login-doubles", Type: results.Web, Users: seededUsers(users)})
	waitUntil(t, 30*time.Second, "the first 10 users applied", func() bool {
		job, err := env.Store.Job(ctx, "login-doubles")
		return err == nil && job.Applied >= 10
	})

	// The operator changes the admin's password on Odin before the workers'.
	user, _ := env.Sim.Login()
	env.Sim.SetCredentials(user, "the-new-password")
	env.Sim.ExpireTokens()
	before := env.Sim.Stats()

	// Watch the pauses until one of 4 s (the fourth in a row) is on.
	var pauses []time.Duration
	last := time.Duration(0)
	waitUntil(t, 20*time.Second, "a pause of 4 s", func() bool {
		remaining, _, err := env.Limiter.Paused(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if remaining > last+100*time.Millisecond {
			pauses = append(pauses, remaining)
		}
		last = remaining
		return remaining > 3*time.Second
	})
	logins := env.Sim.Stats().Requests["POST /auth/token"] - before.Requests["POST /auth/token"]
	t.Logf("pauses as they began: %v; %d login attempts", pauses, logins)
	if len(pauses) != 3 && len(pauses) != 4 {
		// The first pause may start before the first reading.
		t.Errorf("%d pauses before the one of 4 s, want 3 or 4 (1 s, 2 s, 4 s)", len(pauses))
	}
	if logins > 5 {
		t.Errorf("%d login attempts within three pauses, want at most 5: each failed login in a row should double the pause", logins)
	}

	// The worker restarts with the new password.
	env.Workers[0].Shutdown()
	left, _, err := env.Limiter.Paused(ctx)
	if err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	env.AddWorker()
	job := waitJob(t, env.Store, "login-doubles", 30*time.Second)
	checkAllApplied(t, job, users)
	took := time.Since(restartedAt)
	t.Logf("job finished %v after the restart, with %v of the pause left", took.Round(time.Millisecond), left.Round(time.Millisecond))
	if took >= left {
		t.Errorf("job finished %v after the worker with the right password started, want before the pause's end %v after the start: the start should end the pause and run the waiting tasks", took, left)
	}

	// The login worked again, so the next failure pauses for the first length.
	env.Sim.SetCredentials(user, "a-password-no-worker-has")
	env.Sim.ExpireTokens()
	env.Submit(tasks.BulkResetPayload{JobID: "login-again", Type: results.Web, Users: seededUsers(5)})
	waitUntil(t, 10*time.Second, "a pause after the new failure", func() bool {
		remaining, _, err := env.Limiter.Paused(ctx)
		return err == nil && remaining > 0
	})
	if remaining, _, _ := env.Limiter.Paused(ctx); remaining > cooldown {
		t.Errorf("pause of %v after the first failed login since the login worked, want at most %v", remaining, cooldown)
	}
}
